"""The GASP model: voxelizer, BEV encoder, implicit decoders, losses (one building block per module)."""

from gasp_core.models.config import VARIANTS, DecoderConfig, EncoderConfig, LossConfig, ModelConfig, Variant, VoxelizerConfig, variant
from gasp_core.models.gasp_model import GaspModel, load_pretrained

__all__ = ["VARIANTS", "DecoderConfig", "EncoderConfig", "GaspModel", "LossConfig", "ModelConfig", "Variant",
           "VoxelizerConfig", "load_pretrained", "variant"]
