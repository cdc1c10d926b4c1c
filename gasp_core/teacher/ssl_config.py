"""Configuration of the in-domain self-supervised teacher (``teacher`` section of params.yaml), its output file
names and the disabled stage's marker. Imports neither torch nor timm: the ``teacher`` stage reads its config and,
when disabled, writes its marker from here alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gasp_core.card import write_card
from gasp_core.config import from_dict
from gasp_core.io import atomic_dir, write_json_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "teacher.json"


@dataclass
class TeacherTrainConfig:
    enabled: bool = True
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
    steps: int = 480
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
    max_seconds: float | None = None
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
    num_threads: int = 0
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
        write_card(
            tmp,
            "# No in-domain teacher\n\n`teacher.enabled` is false: no ViT was trained. The `dino_targets` stage\n"
            "takes its image teacher from `dino_targets.teacher.weights` (DINOv2 from a local file or the hub,\n"
            "or random).\n",
        )
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
