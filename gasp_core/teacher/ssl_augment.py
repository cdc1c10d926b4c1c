"""The teacher's training inputs: images resized once into a uint8 canvas, random resized and flipped crops, colour
jitter, and the patch masks (MAE's random masks, iBOT's block masks). torch is imported inside the functions.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


# ---------------------------------------------------------------------------------------------------------- images


def fit_size(height: int, width: int, side: int, patch: int) -> tuple[int, int]:
    """DinoTeacher's input size rule: longer side <= ``side`` (never enlarged), sides multiples of ``patch``."""
    scale = min(1.0, side / max(height, width))
    return (
        max(patch, int(round(height * scale / patch)) * patch),
        max(patch, int(round(width * scale / patch)) * patch),
    )


def _as_uint8_image(item) -> torch.Tensor:
    """(3, H, W) uint8 of an image file or a (3, H, W) tensor (uint8, or float in [0, 1])."""
    import torch

    if isinstance(item, (str, Path)):
        from PIL import Image

        try:
            with Image.open(item) as im:
                arr = np.array(im.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"camera image {item}: unreadable ({exc})") from exc
        return torch.from_numpy(arr).permute(2, 0, 1)
    t = torch.as_tensor(item)
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"expected (3, H, W) images, got shape {tuple(t.shape)}")
    return t if t.dtype == torch.uint8 else (t.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def preload_images(images, side: int, patch: int, chunk: int = 64) -> tuple[torch.Tensor, np.ndarray, tuple[int, int]]:
    """All images resized once (antialiased bilinear, as DinoTeacher does) into one uint8 canvas tensor.

    Returns the canvas (N, 3, Hc, Wc) (images top-left, zero-padded when their sizes differ), each image's (h, w)
    and the training input size: the most common resized size.
    """
    import torch
    import torch.nn.functional as F

    raw = [_as_uint8_image(item) for item in images]
    if not raw:
        raise ValueError("no images to train the teacher on")
    sizes = np.array([fit_size(r.shape[1], r.shape[2], side, patch) for r in raw], dtype=np.int64)
    canvas = torch.zeros((len(raw), 3, int(sizes[:, 0].max()), int(sizes[:, 1].max())), dtype=torch.uint8)
    groups = collections.defaultdict(list)
    for i, r in enumerate(raw):
        groups[(tuple(r.shape[1:]), tuple(sizes[i]))].append(i)
    for (src, (h, w)), members in groups.items():
        for k in range(0, len(members), chunk):
            idx = members[k : k + chunk]
            x = torch.stack([raw[i] for i in idx])
            if src != (h, w):
                x = F.interpolate(
                    x.float() / 255.0, size=(int(h), int(w)), mode="bilinear", align_corners=False, antialias=True
                )
                x = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
            canvas[idx, :, :h, :w] = x
    train_hw = collections.Counter(map(tuple, sizes.tolist())).most_common(1)[0][0]
    return canvas, sizes, (int(train_hw[0]), int(train_hw[1]))


def crop_thetas(
    rng: np.random.Generator,
    sizes: np.ndarray,
    canvas_hw: tuple[int, int],
    out_hw: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Affine grids (B, 2, 3) of random resized crops with random horizontal flips, for ``F.affine_grid``
    (align_corners=False): each crop lies inside its image's valid (h, w) corner of the canvas."""
    b = len(sizes)
    h, w = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    area = rng.uniform(scale[0], scale[1], b) * h * w
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), b)) * out_hw[1] / out_hw[0]
    cw = np.minimum(np.sqrt(area * aspect), w)
    ch = np.minimum(np.sqrt(area / aspect), h)
    x0 = rng.uniform(0.0, 1.0, b) * (w - cw)
    y0 = rng.uniform(0.0, 1.0, b) * (h - ch)
    flip = np.where(rng.random(b) < 0.5, -1.0, 1.0)
    hc, wc = canvas_hw
    theta = np.zeros((b, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = flip * cw / wc
    theta[:, 0, 2] = (2 * x0 + cw) / wc - 1
    theta[:, 1, 1] = ch / hc
    theta[:, 1, 2] = (2 * y0 + ch) / hc - 1
    return theta


def _crops(
    canvas: torch.Tensor,
    idx: np.ndarray,
    sizes: np.ndarray,
    out_hw: tuple[int, int],
    scale: tuple[float, float],
    rng: np.random.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Random resized, flipped crops (B, 3, oh, ow) in [0, 1] of the canvas images ``idx``."""
    import torch
    import torch.nn.functional as F

    theta = torch.from_numpy(crop_thetas(rng, sizes[idx], tuple(canvas.shape[-2:]), out_hw, scale)).to(device)
    src = canvas[torch.from_numpy(idx).to(canvas.device)].to(device).float().div_(255.0)
    grid = F.affine_grid(theta, [len(idx), 3, *out_hw], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _color_jitter(x: torch.Tensor, strength: float, gray_prob: float, rng: np.random.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter and random greying of (B, 3, H, W) images in [0, 1]."""
    import torch

    b = x.shape[0]
    if strength > 0:
        f = torch.from_numpy(1.0 + strength * rng.uniform(-1.0, 1.0, (3, b, 1, 1, 1))).to(x)
        x = x * f[0]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * f[1] + mean
        gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = gray + (x - gray) * f[2]
    if gray_prob > 0:
        g = torch.from_numpy(rng.random(b) < gray_prob).to(x.device).view(b, 1, 1, 1)
        gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = torch.where(g, gray.expand_as(x), x)
    return x.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------- masks


def random_masks(rng: np.random.Generator, batch: int, tokens: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """MAE masks: ``ids_keep`` (B, n_keep) of the visible patches (sorted) and ``mask`` (B, N), 1 where hidden."""
    keep = max(1, int(round(tokens * (1.0 - ratio))))
    order = np.argsort(rng.random((batch, tokens)), axis=1)
    ids_keep = np.sort(order[:, :keep], axis=1)
    mask = np.ones((batch, tokens), dtype=np.float32)
    np.put_along_axis(mask, ids_keep, 0.0, axis=1)
    return ids_keep, mask


def block_mask(rng: np.random.Generator, grid: tuple[int, int], count: int) -> np.ndarray:
    """A (gh, gw) bool mask of about ``count`` patches, as random rectangular blocks (BEiT / iBOT style)."""
    gh, gw = grid
    mask = np.zeros(grid, dtype=bool)
    for _ in range(100):
        left = count - int(mask.sum())
        if left <= 0:
            break
        area = rng.uniform(min(4, left), max(min(4, left), left))
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        bh = int(np.clip(round(math.sqrt(area * aspect)), 1, gh))
        bw = int(np.clip(round(math.sqrt(area / aspect)), 1, gw))
        top, lft = rng.integers(0, gh - bh + 1), rng.integers(0, gw - bw + 1)
        mask[top : top + bh, lft : lft + bw] = True
    return mask
