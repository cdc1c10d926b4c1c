"""The GASP model: voxelizer, BEV encoder, implicit decoders, losses (one building block per module).

The model classes are imported on first use (PEP 562), so that reading a config (``gasp_core.models.config``,
torch-free) does not pay for importing torch and timm: stages that only read params start seconds sooner."""

from gasp_core.models.config import (
    VARIANTS,
    DecoderConfig,
    EncoderConfig,
    LossConfig,
    ModelConfig,
    Variant,
    VoxelizerConfig,
    variant,
)

__all__ = [
    "VARIANTS",
    "DecoderConfig",
    "EncoderConfig",
    "GaspModel",
    "LossConfig",
    "ModelConfig",
    "Variant",
    "VoxelizerConfig",
    "load_pretrained",
    "variant",
]


def __getattr__(name: str):
    if name in ("GaspModel", "load_pretrained"):
        from gasp_core.models import gasp_model

        return getattr(gasp_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
