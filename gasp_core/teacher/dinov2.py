"""The image teacher through timm: model, weights (local file, Hugging Face hub, an in-domain teacher or random)
and patch features.

Weights are offline unless the config says ``hub``: a local ``.safetensors`` / ``.pth`` file (loaded
without unpickling: safetensors or ``torch.load(weights_only=True)``, original DINOv2 checkpoints are
converted by timm's filter); a folder written by the ``teacher`` stage (``teacher.json`` names its timm
architecture, ``model.safetensors`` holds its weights: a ViT trained self-supervised on the world's own
images); or ``random`` for machines without the weights, which logs a loud warning and is recorded in
the stage metrics so no report can mistake it for DINOv2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

RANDOM_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! DINO TEACHER HAS RANDOM WEIGHTS: the 'DINO' targets are features of an untrained ViT, not DINOv2.\n"
    "!! Set dino_targets.teacher.weights to a local DINOv2 checkpoint (or 'hub' with network access).\n" + "!" * 78
)


@dataclass
class TeacherConfig:
    model: str = "vit_small_patch14_reg4_dinov2"
    """Any timm DINOv2 model (vit_{small,base,large,giant}_patch14[_reg4]_dinov2)."""
    weights: str = "models/teacher"
    """'random', 'hub' (Hugging Face cache, or network: only when chosen), a path to .safetensors / .pth, or the
    folder of an in-domain teacher written by the ``teacher`` stage (its teacher.json overrides ``model``)."""
    max_side_px: int = 448
    """Images are resized so their longer side is at most this, each side a multiple of the patch size."""
    batch_size: int = 16
    """Images per forward pass."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda[:n]'."""
    init_seed: int = 0
    """Seed of the random initialisation (what 'random' weights are; reruns give identical targets)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher"):  # common wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


class DinoTeacher(torch.nn.Module):
    """Patch features of a timm DINOv2 ViT: ``(B, 3, H, W)`` images in [0, 1] -> ``(B, C, H/14, W/14)``."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mean, std, self.model_name = None, None, cfg.model
        if cfg.weights not in ("hub", "random") and Path(cfg.weights).is_dir():
            self.vit, mean, std = self._in_domain(Path(cfg.weights))
        elif "dinov2" not in cfg.model:
            raise ValueError(f"teacher model {cfg.model!r} is not a timm DINOv2 model")
        elif cfg.weights == "hub":
            self.vit = timm.create_model(cfg.model, pretrained=True, dynamic_img_size=True, num_classes=0)
            self.weights_id = f"hub:{self.vit.pretrained_cfg.get('hf_hub_id', cfg.model)}"
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.init_seed)
                self.vit = timm.create_model(cfg.model, pretrained=False, dynamic_img_size=True, num_classes=0)
            if cfg.weights == "random":
                log.warning(RANDOM_WARNING)
                self.weights_id = "random"
            else:
                state = load_state_dict(Path(cfg.weights))
                if not set(self.vit.state_dict()) <= set(state):  # an original DINOv2 checkpoint: convert
                    from timm.models.vision_transformer import checkpoint_filter_fn

                    state = checkpoint_filter_fn(state, self.vit)
                missing, unexpected = self.vit.load_state_dict(state, strict=False)
                if missing:
                    raise ValueError(
                        f"teacher weights {cfg.weights} lack {len(missing)} tensors of {cfg.model}, e.g. {missing[:3]}"
                    )
                if unexpected:
                    log.info("teacher weights: ignoring %d extra tensors (%s...)", len(unexpected), unexpected[:2])
                self.weights_id = f"file:{Path(cfg.weights).name}:sha256={_file_sha256(Path(cfg.weights))[:16]}"
        self.vit.eval().requires_grad_(False)
        self.patch = int(self.vit.patch_embed.patch_size[0])
        mean = mean or self.vit.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))
        std = std or self.vit.pretrained_cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _in_domain(self, folder: Path) -> tuple[torch.nn.Module, list[float], list[float]]:
        """The ViT of a ``teacher`` stage output folder, its weights loaded strictly, and its input normalisation.
        It runs at ``max_side_px`` like any teacher, not at the smaller crops it was trained on: its position
        embedding is interpolated, and the finer patch grid is what thin classes need (the probe measured that)."""
        meta_path = folder / "teacher.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"teacher weights {folder} is a folder without teacher.json: not a teacher stage output"
            )
        meta = json.loads(meta_path.read_text())
        if not meta.get("trained", True):
            raise ValueError(
                f"{meta_path}: the teacher stage trained no teacher (teacher.enabled is false); enable it "
                "or set dino_targets.teacher.weights to 'random', 'hub' or a checkpoint"
            )
        weights = folder / "model.safetensors"
        self.model_name = meta["model"]
        vit = timm.create_model(
            meta["model"], pretrained=False, dynamic_img_size=True, num_classes=0, **meta.get("model_args", {})
        )
        vit.load_state_dict(load_state_dict(weights), strict=True)
        self.weights_id = f"in_domain:{meta.get('objective', '?')}:{meta['model']}:sha256={_file_sha256(weights)[:16]}"
        return vit, meta.get("mean"), meta.get("std")

    @property
    def is_random(self) -> bool:
        return self.weights_id == "random"

    @property
    def dim(self) -> int:
        return int(self.vit.embed_dim)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input size for an image: longer side <= max_side_px, sides multiples of the patch."""
        scale = min(1.0, self.cfg.max_side_px / max(height, width))
        return (
            max(self.patch, int(round(height * scale / self.patch)) * self.patch),
            max(self.patch, int(round(width * scale / self.patch)) * self.patch),
        )

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        size = self.input_size(h, w)
        x = (
            F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
            if size != (h, w)
            else images
        )
        x = (x - self.mean) / self.std
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            tokens = self.vit.forward_features(x)
        patches = tokens[:, self.vit.num_prefix_tokens :].float()
        gh, gw = size[0] // self.patch, size[1] // self.patch
        return patches.reshape(b, gh, gw, -1).permute(0, 3, 1, 2).contiguous()


def sample_features(feature_map: torch.Tensor, uv: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear samples (P, C) of a (C, h, w) patch-feature map at pixel positions ``uv`` (P, 2) of the image.

    The map covers the whole image, each patch feature standing at its patch's centre (align_corners=False).
    """
    h, w = image_hw
    grid = torch.as_tensor(
        np.stack([2.0 * uv[:, 0] / w - 1.0, 2.0 * uv[:, 1] / h - 1.0], axis=-1),
        dtype=feature_map.dtype,
        device=feature_map.device,
    ).view(1, 1, -1, 2)
    out = F.grid_sample(feature_map[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def hub_offline_guard() -> None:
    """Keep Hugging Face and timm from touching the network unless a config asked for the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
