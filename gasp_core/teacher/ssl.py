"""In-domain self-supervised teacher: a small timm ViT trained on the world's own camera images, without labels.

Two objectives:

* ``mae``: masked autoencoder. The encoder sees only the visible patches; a light decoder (timm blocks) predicts
  the per-patch normalised pixels of the masked ones.
* ``dino``: DINO self-distillation from an EMA teacher across 2 global and n local crops (centring and
  sharpening of the teacher's prototype scores), plus iBOT's masked patch-token term, so the patch tokens (the
  dense features the targets use), not only CLS, are trained.

The output folder holds the ViT backbone alone (``model.safetensors``, loadable strictly into
``timm.create_model(model, pretrained=False, dynamic_img_size=True, num_classes=0, **model_args)``) and
``teacher.json`` (how to build and feed it). torch and timm are imported only when training starts, so a disabled
stage costs nothing.
"""

from __future__ import annotations

import collections
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gasp_core.config import from_dict
from gasp_core.io import atomic_dir, write_json_atomic

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "teacher.json"


@dataclass
class TeacherTrainConfig:
    enabled: bool = False
    """Train a teacher; false: the stage only writes a ``teacher.json`` saying ``{"trained": false}``."""
    objective: Literal["mae", "dino"] = "mae"
    """'mae' (masked pixel reconstruction) or 'dino' (DINO self-distillation with an iBOT patch term)."""
    model: str = "vit_tiny_patch16_224"
    """Any timm VisionTransformer name; built with pretrained=False, dynamic_img_size=True, num_classes=0."""
    model_args: dict = field(default_factory=lambda: {"patch_size": 8, "depth": 4})
    """Extra timm.create_model arguments (patch_size, depth, embed_dim, num_heads, ...). ``img_size`` defaults to
    the training input size, so the position embedding matches the training grid."""
    image_side_px: int = 112
    """Longer side of the training input: images are resized (never enlarged) so their longer side is at most
    this, each side a multiple of the patch, as DinoTeacher resizes them; recorded as ``max_side_px``."""
    frame_stride: int = 1
    """The stage trains on every n-th frame of each camera of the training logs."""
    steps: int = 700
    """Optimiser steps (the run ends at whichever of ``steps`` and ``max_seconds`` comes first)."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 1.5e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to ``min_lr_ratio * lr``)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr``."""
    weight_decay: float = 0.05
    """AdamW weight decay (not on biases, norms, position embeddings and tokens)."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up steps."""
    grad_clip: float = 3.0
    """Gradient norm clip (0: none)."""
    max_seconds: float | None = 170.0
    """Wall-clock cap on the whole run, image loading included (null: none). A step that would end past it is not
    started; the metrics say which cap stopped training."""
    time_schedule: bool = True
    """With ``max_seconds``: the learning-rate and EMA schedules follow max(step / steps, elapsed / max_seconds), so
    a run stopped by time still ends annealed (such runs are not bit-reproducible). False: by steps only."""
    mask_ratio: float = 0.75
    """MAE: fraction of patches hidden from the encoder."""
    crop_scale: tuple[float, float] = (0.35, 1.0)
    """Area range (fraction of the image) of the random resized crops (MAE inputs, DINO global crops)."""
    ema: float = 0.99
    """DINO: starting momentum of the EMA teacher, raised to 1 along a cosine over training."""
    local_crops: int = 4
    """DINO: local crops per image (besides the 2 global crops)."""
    local_crop_patches: int = 6
    """DINO: side of the square local crops, in patches."""
    local_scale: tuple[float, float] = (0.08, 0.35)
    """DINO: area range of the local crops."""
    prototypes: int = 1024
    """DINO: output dimension of the projection head (shared by the CLS and patch terms)."""
    head_hidden: int = 512
    """DINO: hidden width of the projection head's MLP."""
    head_bottleneck: int = 128
    """DINO: the head's bottleneck (L2-normalised before the weight-normalised prototypes)."""
    student_temp: float = 0.1
    """DINO: softmax temperature of the student."""
    teacher_temp: float = 0.04
    """DINO: softmax temperature of the teacher (sharpening)."""
    centering: Literal["sinkhorn", "ema"] = "sinkhorn"
    """DINO: how the teacher's scores are centred before sharpening: 'ema' (DINO: subtract an EMA of their batch
    mean) or 'sinkhorn' (DINOv2: Sinkhorn-Knopp equipartition over the batch, robust in short runs)."""
    center_momentum: float = 0.9
    """DINO, 'ema' centring: momentum of the centres subtracted from the teacher's scores."""
    ibot_weight: float = 1.0
    """DINO: weight of the iBOT masked patch-token loss (0: plain DINO, CLS only)."""
    koleo_weight: float = 0.1
    """DINO: weight of DINOv2's KoLeo term spreading the student's CLS features over a batch (0: none)."""
    ibot_mask_prob: float = 0.5
    """DINO: fraction of the student's global crops that get masked patches."""
    ibot_mask_ratio: tuple[float, float] = (0.1, 0.5)
    """DINO: range of the fraction of patches masked (in blocks) in a masked global crop."""
    color_jitter: float = 0.2
    """DINO: strength of the brightness / contrast / saturation jitter of the crops (0: none)."""
    grayscale_prob: float = 0.1
    """DINO: probability that a crop is turned grey."""
    decoder_dim: int = 128
    """MAE: decoder width."""
    decoder_depth: int = 1
    """MAE: decoder transformer blocks."""
    decoder_heads: int = 4
    """MAE: decoder attention heads."""
    norm_pix_loss: bool = True
    """MAE: reconstruct each patch's pixels normalised by the patch's own mean and variance."""
    seed: int = 0
    """Seeds the initialisation, the batch order, the crops and the masks."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda[:n]'; bf16 autocast on CUDA only."""
    num_threads: int = 1
    """torch CPU threads during training (0: torch's default). 1 is the robust choice on a shared machine: with 2
    threads and another process on one of 2 cores, steps were 3-5 times slower than with 1."""
    log_every: int = 20
    """Log the mean loss every n steps (also the loss curve's resolution)."""


def teacher_train_config_from_dict(data, strict: bool = False) -> TeacherTrainConfig:
    return from_dict(TeacherTrainConfig, data, "teacher", strict)


def write_untrained(out_dir: Path) -> dict:
    """The disabled stage's output: ``teacher.json`` = {"trained": false} and no weights; returns its metrics."""
    with atomic_dir(Path(out_dir)) as tmp:
        write_json_atomic(tmp / META_FILE, {"trained": False})
    return {"trained": False}


def _validate(cfg: TeacherTrainConfig) -> None:
    checks = [
        (cfg.objective in ("mae", "dino"), f"objective {cfg.objective!r} is not 'mae' or 'dino'"),
        (cfg.steps >= 0 and cfg.batch_size >= 1, "steps must be >= 0 and batch_size >= 1"),
        (0.0 < cfg.mask_ratio < 1.0, f"mask_ratio {cfg.mask_ratio} is not in (0, 1)"),
        (0.0 <= cfg.ema <= 1.0, f"ema {cfg.ema} is not in [0, 1]"),
        (0.0 <= cfg.center_momentum < 1.0, f"center_momentum {cfg.center_momentum} is not in [0, 1)"),
        (cfg.max_seconds is None or cfg.max_seconds > 0, "max_seconds must be positive or null"),
        (
            0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1 and 0 < cfg.local_scale[0] <= cfg.local_scale[1] <= 1,
            "crop_scale / local_scale must be ranges within (0, 1]",
        ),
        (0 <= cfg.ibot_mask_ratio[0] <= cfg.ibot_mask_ratio[1] < 1, "ibot_mask_ratio must be a range within [0, 1)"),
        (
            cfg.log_every >= 1 and cfg.image_side_px >= 1 and cfg.frame_stride >= 1,
            "log_every, image_side_px and frame_stride must be >= 1",
        ),
        (
            not {"pretrained", "num_classes", "dynamic_img_size"} & set(cfg.model_args),
            "model_args may not set pretrained, num_classes or dynamic_img_size (the loader fixes them)",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"teacher: {msg}")


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


# ---------------------------------------------------------------------------------------------------------- models


def build_backbone(model: str, model_args: dict) -> torch.nn.Module:
    """The ViT exactly as a loader builds it (so its state dict loads strictly there)."""
    import timm

    vit = timm.create_model(model, pretrained=False, dynamic_img_size=True, num_classes=0, **model_args)
    for name in ("patch_embed", "blocks", "_pos_embed", "norm", "num_prefix_tokens", "embed_dim"):
        if not hasattr(vit, name):
            raise ValueError(f"teacher model {model!r} is not a timm VisionTransformer (it lacks {name})")
    return vit


def _sincos_init(vit) -> None:
    """Fixed 2D sin-cos values as the position embedding's starting point (faster to learn from than noise)."""
    import torch
    from timm.layers import build_sincos2d_pos_embed

    if vit.pos_embed is None:
        return
    gh, gw = vit.patch_embed.grid_size
    pe = build_sincos2d_pos_embed([gh, gw], dim=vit.embed_dim).reshape(gh * gw, vit.embed_dim)
    with torch.no_grad():
        n = vit.pos_embed.shape[1]
        vit.pos_embed[0, n - gh * gw :] = pe.to(vit.pos_embed)
        vit.pos_embed[0, : n - gh * gw] = 0.0


def _init_linear(module) -> None:
    import torch

    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


def embed_tokens(
    vit, x: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
) -> torch.Tensor:
    """timm's forward_features up to the blocks: patch embedding (patches where ``mask`` (B, N) is true replaced
    by ``mask_token``), prefix tokens and position embedding. Returns (B, prefix + N, C)."""
    import torch

    x = vit.patch_embed(x)
    if mask is not None:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        flat = torch.where(mask[..., None], mask_token.to(flat.dtype), flat)
        x = flat.view_as(x)
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, p * p * 3), patches in the ViT's token order (row-major)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden patches only (``mask`` (B, N) 1 where hidden)."""
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def _mae_decoder(cfg: TeacherTrainConfig, embed_dim: int, grid: tuple[int, int], patch: int, prefix: int):
    import torch
    from timm.layers import build_sincos2d_pos_embed
    from timm.models.vision_transformer import Block

    nn = torch.nn
    dec = nn.ModuleDict(
        {
            "embed": nn.Linear(embed_dim, cfg.decoder_dim),
            "blocks": nn.Sequential(
                *[
                    Block(cfg.decoder_dim, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                    for _ in range(cfg.decoder_depth)
                ]
            ),
            "norm": nn.LayerNorm(cfg.decoder_dim),
            "pred": nn.Linear(cfg.decoder_dim, patch * patch * 3),
        }
    )
    dec.apply(_init_linear)
    dec.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
    nn.init.normal_(dec.mask_token, std=0.02)
    pos = build_sincos2d_pos_embed(list(grid), dim=cfg.decoder_dim).reshape(1, grid[0] * grid[1], cfg.decoder_dim)
    dec.register_buffer("pos", pos, persistent=False)
    dec.prefix = prefix
    return dec


def mae_loss(
    vit, dec, images: torch.Tensor, ids_keep: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool
) -> torch.Tensor:
    """MAE on normalised (B, 3, H, W) images: encode the visible patches ``ids_keep``, decode all, score the hidden."""
    import torch

    x = embed_tokens(vit, images)
    pre, tokens = x[:, : vit.num_prefix_tokens], x[:, vit.num_prefix_tokens :]
    c = tokens.shape[-1]
    visible = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, c))
    z = dec["embed"](vit.norm(vit.blocks(torch.cat([pre, visible], dim=1))))
    b, n = mask.shape
    full = dec.mask_token.to(z.dtype).expand(b, n, -1).clone()
    full.scatter_(1, ids_keep[..., None].expand(-1, -1, z.shape[-1]), z[:, vit.num_prefix_tokens :])
    y = torch.cat([z[:, : vit.num_prefix_tokens], full + dec.pos.to(z.dtype)], dim=1)
    pred = dec["pred"](dec["norm"](dec["blocks"](y)))[:, vit.num_prefix_tokens :].float()
    target = patchify(images, patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    return masked_mse(pred, target, mask)


def _dino_head(cfg: TeacherTrainConfig, embed_dim: int):
    import torch

    nn = torch.nn
    head = nn.ModuleDict(
        {
            "mlp": nn.Sequential(
                nn.Linear(embed_dim, cfg.head_hidden),
                nn.GELU(),
                nn.Linear(cfg.head_hidden, cfg.head_hidden),
                nn.GELU(),
                nn.Linear(cfg.head_hidden, cfg.head_bottleneck),
            )
        }
    )
    head.apply(_init_linear)
    head.prototypes = nn.Parameter(torch.empty(cfg.prototypes, cfg.head_bottleneck))
    nn.init.trunc_normal_(head.prototypes, std=0.02)
    return head


def head_scores(head, x: torch.Tensor) -> torch.Tensor:
    """Prototype scores: L2-normalised bottleneck against unit-norm prototypes (weight norm with g = 1)."""
    import torch
    import torch.nn.functional as F

    z = head["mlp"](x)
    with torch.autocast(device_type=z.device.type, enabled=False):
        return F.linear(F.normalize(z.float(), dim=-1), F.normalize(head.prototypes.float(), dim=-1))


@dataclass
class _Centers:
    cls: torch.Tensor
    patch: torch.Tensor


def ema_update(teacher, student, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    import torch

    with torch.no_grad():
        t = [p for p in teacher.parameters()]
        s = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, s, alpha=1.0 - momentum)


def sinkhorn_knopp(scores: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """Teacher targets (M, K) from scores (M, K): softmax at ``temp`` balanced so every prototype gets an equal
    share of the batch (DINOv2's centring)."""
    import torch

    q = torch.exp((scores.float() - scores.max()) / temp).T  # (K, M)
    q = q / q.sum()
    k, m = q.shape
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / m
    return (q * m).T


def teacher_targets(scores: torch.Tensor, center: torch.Tensor, cfg: TeacherTrainConfig) -> torch.Tensor:
    """Centred and sharpened teacher distributions (M, K) of scores (M, K); updates the EMA ``center`` in place."""
    import torch

    if cfg.centering == "sinkhorn":
        return sinkhorn_knopp(scores, cfg.teacher_temp)
    probs = torch.softmax((scores - center) / cfg.teacher_temp, dim=-1)
    center.mul_(cfg.center_momentum).add_(scores.mean(0, keepdim=True), alpha=1 - cfg.center_momentum)
    return probs


def dino_losses(
    t_cls: torch.Tensor,
    s_cls: list[torch.Tensor],
    t_patch: torch.Tensor,
    s_patch: torch.Tensor,
    patch_mask: torch.Tensor,
    centers: _Centers,
    cfg: TeacherTrainConfig,
) -> dict[str, torch.Tensor]:
    """DINO's cross-view CLS loss and iBOT's masked patch loss (and the teacher's CLS targets, 'targets').

    ``t_cls`` (2, B, K) teacher scores of the global crops, ``s_cls`` student scores per crop (globals first),
    ``t_patch`` (M, K) teacher scores of the M patches that ``patch_mask`` (2B, N) hides from the student and
    ``s_patch`` (M, K) the student's scores there.
    """
    import torch

    two, b, k = t_cls.shape
    with torch.no_grad():
        tp = teacher_targets(t_cls.reshape(two * b, k), centers.cls, cfg).view(two, b, k)
    terms = [
        -(tp[i] * torch.log_softmax(s / cfg.student_temp, dim=-1)).sum(-1).mean()
        for i in range(two)
        for j, s in enumerate(s_cls)
        if j != i
    ]
    out = {"dino": torch.stack(terms).mean()}
    ibot = s_patch.new_zeros(())
    if s_patch.shape[0]:
        with torch.no_grad():
            tpp = teacher_targets(t_patch, centers.patch, cfg)
        per_token = -(tpp * torch.log_softmax(s_patch / cfg.student_temp, dim=-1)).sum(-1)
        counts = patch_mask.sum(dim=1)
        weight = (1.0 / counts.clamp_min(1).float()).repeat_interleave(counts)  # each masked image counts once
        ibot = (per_token * weight).sum() / (counts > 0).sum()
    out["ibot"] = ibot
    out["targets"] = tp.reshape(two * b, k)
    return out


def koleo_loss(x: torch.Tensor) -> torch.Tensor:
    """DINOv2's KoLeo regulariser: minus the mean log distance of each L2-normalised row of (B, C) to its nearest
    neighbour in the batch (large when features bunch up)."""
    import torch
    import torch.nn.functional as F

    x = F.normalize(x.float(), dim=-1)
    dist = torch.cdist(x, x) + torch.eye(len(x), device=x.device) * 1e3
    return -torch.log(dist.min(dim=1).values + 1e-8).mean()


def _entropy(p: torch.Tensor) -> float:
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


# -------------------------------------------------------------------------------------------------------- training


def _param_groups(modules, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            flat = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token", "mask_token"))
            (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(cfg: TeacherTrainConfig, step: int, progress: float) -> tuple[float, float]:
    """Learning rate and EMA momentum at ``step`` and training progress in [0, 1]."""
    if step < cfg.warmup_steps:
        lr = cfg.lr * (step + 1) / cfg.warmup_steps
    else:
        start = min(cfg.warmup_steps / max(cfg.steps, 1), 0.99)
        q = min(max((progress - start) / (1.0 - start), 0.0), 1.0)
        lr = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * q)))
    momentum = 1.0 - (1.0 - cfg.ema) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return lr, momentum


def _batches(rng: np.random.Generator, n: int, size: int):
    """Endless batches of image indices: shuffled epochs, batches may straddle epochs."""
    pool = np.empty(0, dtype=np.int64)
    while True:
        while len(pool) < size:
            pool = np.concatenate([pool, rng.permutation(n)])
        yield pool[:size]
        pool = pool[size:]


def train_teacher(
    images: Sequence[Path | str] | Sequence[Any] | torch.Tensor,
    cfg: TeacherTrainConfig,
    out_dir: Path,
    progress: bool = True,
) -> dict:
    """Train the teacher on ``images`` (image files, or (3, H, W) tensors: uint8 or float in [0, 1]) and write
    ``model.safetensors`` (the ViT backbone) and ``teacher.json`` into ``out_dir`` atomically; returns metrics.

    ``mae`` saves the encoder, ``dino`` the EMA teacher's backbone.
    """
    import torch
    from safetensors.torch import save_file

    from gasp_core.progress import progress as progress_bar
    from gasp_core.teacher.dinov2 import resolve_device

    _validate(cfg)
    start = time.perf_counter()
    deadline = None if cfg.max_seconds is None else start + cfg.max_seconds
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        patch = int(build_backbone(cfg.model, {"img_size": 224, **cfg.model_args}).patch_embed.patch_size[0])
        canvas, sizes, train_hw = preload_images(images, cfg.image_side_px, patch)
        canvas = canvas.to(device)
        model_args = {**cfg.model_args}
        model_args.setdefault("img_size", list(train_hw))
        torch.manual_seed(cfg.seed)
        vit = build_backbone(cfg.model, model_args).to(device)
        _sincos_init(vit)
        load_s = time.perf_counter() - start
        grid = (train_hw[0] // patch, train_hw[1] // patch)
        log.info(
            "teacher (%s): %d images at %dx%d (%dx%d patches of %d px), %s with %.2f M parameters, on %s; "
            "loaded in %.1f s",
            cfg.objective,
            len(canvas),
            train_hw[1],
            train_hw[0],
            grid[1],
            grid[0],
            patch,
            cfg.model,
            sum(p.numel() for p in vit.parameters()) / 1e6,
            device,
            load_s,
        )
        step_fn, extras, trainable = _objective(cfg, vit, canvas, sizes, train_hw, patch, rng, device)
        opt = torch.optim.AdamW(_param_groups(trainable, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95), foreach=True)
        params = [p for group in opt.param_groups for p in group["params"]]
        batches = _batches(rng, len(canvas), cfg.batch_size)
        curve, window, first, stopped_by = [], [], None, "steps"
        train_start = time.perf_counter()
        bar = progress_bar(
            total=cfg.steps,
            desc=f"teacher {cfg.objective}",
            unit="step",
            disable=not (progress and sys.stderr.isatty()),
        )
        step = 0
        for step in range(cfg.steps):
            now = time.perf_counter()
            if deadline is not None and (now >= deadline or (step and now + (now - train_start) / step > deadline)):
                stopped_by = "max_seconds"
                break
            frac = step / cfg.steps
            if deadline is not None and cfg.time_schedule:
                frac = max(frac, (now - train_start) / max(deadline - train_start, 1e-9))
            lr, momentum = _schedule(cfg, step, frac)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                losses = step_fn(next(batches))
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            opt.step()
            if "ema" in extras:
                extras["ema"](momentum)
            values = {k: float(v.detach()) for k, v in losses.items()}
            first = first or values
            window.append(values)
            bar.update(1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                mean = {k: round(sum(w[k] for w in window) / len(window), 5) for k in window[0]}
                curve.append({"step": step + 1, **mean})
                window = []
                log.info(
                    "teacher step %d/%d: %s, lr %.2e, %.2f steps/s",
                    step + 1,
                    cfg.steps,
                    ", ".join(f"{k} {v:.4f}" for k, v in mean.items()),
                    lr,
                    (step + 1) / (time.perf_counter() - train_start),
                )
                bar.set_postfix(loss=f"{mean['loss']:.4f}")
        else:
            step = cfg.steps
        bar.close()
        if window:
            curve.append({"step": step, **{k: round(sum(w[k] for w in window) / len(window), 5) for k in window[0]}})
        train_s = time.perf_counter() - train_start
        backbone = extras.get("teacher_vit", vit)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
        seconds = time.perf_counter() - start
        meta = {
            "trained": True,
            "model": cfg.model,
            "model_args": model_args,
            "objective": cfg.objective,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "max_side_px": max(train_hw),
            "input_hw": list(train_hw),
            "patch_size": patch,
            "embed_dim": int(vit.embed_dim),
            "steps_done": step,
            "seconds": round(seconds, 2),
            "images": len(canvas),
            "stopped_by": stopped_by,
            "loss_curve": curve,
            "config": asdict(cfg),
        }
        with atomic_dir(Path(out_dir)) as tmp:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"model": cfg.model, "objective": cfg.objective})
            write_json_atomic(tmp / META_FILE, meta)
        metrics = {
            "trained": True,
            "objective": cfg.objective,
            "model": cfg.model,
            "images": len(canvas),
            "input_hw": list(train_hw),
            "patch_size": patch,
            "steps_done": step,
            "stopped_by": stopped_by,
            "seconds": round(seconds, 2),
            "load_seconds": round(load_s, 2),
            "steps_per_s": round(step / max(train_s, 1e-9), 3),
            "device": str(device),
            "params_m": round(sum(p.numel() for p in vit.parameters()) / 1e6, 3),
            "loss_first": round(first["loss"], 5) if first else None,
            "loss_final": curve[-1]["loss"] if curve else None,
            **{f"{k}_final": v for k, v in (curve[-1].items() if curve else ()) if k not in ("step", "loss")},
            **{k: v() for k, v in extras.get("diagnostics", {}).items()},
        }
        log.info(
            "teacher: %d steps in %.1f s (%s), loss %s -> %s",
            step,
            seconds,
            stopped_by,
            metrics["loss_first"],
            metrics["loss_final"],
        )
        return metrics
    finally:
        torch.set_num_threads(threads)


def _objective(cfg: TeacherTrainConfig, vit, canvas, sizes, train_hw, patch, rng, device):
    """The objective's step function (batch indices -> dict of losses with 'loss'), extras and trainable modules."""
    import copy

    import torch

    grid = (train_hw[0] // patch, train_hw[1] // patch)
    n_tokens = grid[0] * grid[1]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    vit.train()

    if cfg.objective == "mae":
        dec = _mae_decoder(cfg, vit.embed_dim, grid, patch, vit.num_prefix_tokens).to(device)

        def mae_step(idx: np.ndarray) -> dict:
            x = (_crops(canvas, idx, sizes, train_hw, cfg.crop_scale, rng, device) - mean) / std
            ids_keep, mask = random_masks(rng, len(idx), n_tokens, cfg.mask_ratio)
            loss = mae_loss(
                vit,
                dec,
                x,
                torch.from_numpy(ids_keep).to(device),
                torch.from_numpy(mask).to(device),
                patch,
                cfg.norm_pix_loss,
            )
            return {"loss": loss}

        return mae_step, {}, [vit, dec]

    head = _dino_head(cfg, vit.embed_dim).to(device)
    mask_token = torch.nn.Parameter(torch.zeros(1, 1, vit.embed_dim, device=device))
    student = torch.nn.ModuleDict({"vit": vit, "head": head})
    student.mask_token = mask_token
    teacher = torch.nn.ModuleDict({"vit": copy.deepcopy(vit), "head": copy.deepcopy(head)}).requires_grad_(False)
    teacher.eval()
    centers = _Centers(torch.zeros(1, cfg.prototypes, device=device), torch.zeros(1, cfg.prototypes, device=device))
    local_hw = (cfg.local_crop_patches * patch, cfg.local_crop_patches * patch)
    npre = vit.num_prefix_tokens
    last: dict[str, float] = {}

    def view(idx: np.ndarray, out_hw, scale) -> torch.Tensor:
        x = _crops(canvas, idx, sizes, out_hw, scale, rng, device)
        return (_color_jitter(x, cfg.color_jitter, cfg.grayscale_prob, rng) - mean) / std

    def dino_step(idx: np.ndarray) -> dict:
        b = len(idx)
        globals_ = torch.cat([view(idx, train_hw, cfg.crop_scale) for _ in range(2)])
        masks = np.zeros((2 * b, n_tokens), dtype=bool)
        if cfg.ibot_weight > 0:
            for i in np.flatnonzero(rng.random(2 * b) < cfg.ibot_mask_prob):
                ratio = rng.uniform(*cfg.ibot_mask_ratio)
                masks[i] = block_mask(rng, grid, int(round(ratio * n_tokens))).reshape(-1)
        pmask = torch.from_numpy(masks).to(device)
        with torch.no_grad():
            t = teacher["vit"].forward_features(globals_)
            t_cls = head_scores(teacher["head"], t[:, 0]).view(2, b, -1)
            t_patch = head_scores(teacher["head"], t[:, npre:][pmask])
        s = vit.norm(vit.blocks(embed_tokens(vit, globals_, pmask, mask_token)))
        s_cls = list(head_scores(head, s[:, 0]).view(2, b, -1))
        s_patch = head_scores(head, s[:, npre:][pmask])
        if cfg.local_crops:
            locals_ = torch.cat([view(idx, local_hw, cfg.local_scale) for _ in range(cfg.local_crops)])
            s_cls += list(head_scores(head, vit.forward_features(locals_)[:, 0]).view(cfg.local_crops, b, -1))
        parts = dino_losses(t_cls, s_cls, t_patch, s_patch, pmask, centers, cfg)
        targets = parts.pop("targets")
        if cfg.koleo_weight > 0:
            parts["koleo"] = sum(koleo_loss(chunk[:, 0]) for chunk in s.chunk(2)) / 2
        last["teacher_entropy"] = _entropy(targets)
        last["teacher_batch_entropy"] = _entropy(targets.mean(0, keepdim=True))
        loss = parts["dino"] + cfg.ibot_weight * parts["ibot"] + cfg.koleo_weight * parts.get("koleo", 0.0)
        return {"loss": loss, **parts}

    online = torch.nn.ModuleDict({"vit": vit, "head": head})  # the student without its mask token, as the teacher
    extras = {
        "ema": lambda m: ema_update(teacher, online, m),
        "teacher_vit": teacher["vit"],
        "diagnostics": {
            k: (lambda k=k: round(last.get(k, float("nan")), 4)) for k in ("teacher_entropy", "teacher_batch_entropy")
        },
    }
    return dino_step, extras, [student]
