"""Configs of the GASP model: voxelizer, BEV encoder, implicit decoders, losses and the variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class VoxelizerConfig:
    voxel_size_m: float = 0.625
    """BEV cell size; the grid covers scene.extent_m."""
    z_bins: int = 8
    """Height bins over the extent's z range; channels = (z_bins + len(intensity_levels)) x scene.past_sweeps."""
    intensity_levels: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0)
    """Lidar intensity (0-255) thresholds, each one more binary channel per sweep: the cell holds a ground return
    (``z <= intensity_max_z_m``) at least this bright. A thermometer code of the brightest ground return, which is
    what shows lane paint and crossings (retro-reflective) and road against sidewalk (a curb is far below the height
    bins' resolution). Empty: occupancy only (UnO's input)."""
    intensity_max_z_m: float = 0.5
    """Returns above this height (t0 ego frame, whose origin is on the ground) never set an intensity channel."""


@dataclass
class EncoderConfig:
    backbone: str = "resnet10t"
    """A timm CNN with features_only support (in_chans set to the voxel channels)."""
    out_indices: tuple[int, ...] = (0, 1, 2, 3)
    """Backbone stages fed to the FPN (timm feature indices; 0 is the stride-2 stem)."""
    width: int = 32
    """Channels of the BEV feature map."""
    out_stride: int = 2
    """Stride of the BEV feature map relative to the voxel grid (must be a stride of one of the stages)."""


@dataclass
class DecoderConfig:
    hidden: int = 64
    """Width of the decoder MLPs."""
    blocks: int = 2
    """Residual blocks conditioned on the query's positional encoding."""
    offsets: int = 4
    """Extra BEV locations each query gathers features from (learned offsets, UnO)."""
    offset_scale_m: float = 16.0
    """Largest offset (per axis): what the decoder can reach from its query. A 3 s forecast of a car at 10 m/s must
    look ~30 m away; the feature map's own receptive field covers the rest."""
    pe_frequencies: int = 6
    """Fourier frequencies per query coordinate."""


@dataclass
class LossConfig:
    occupancy_weight: float = 1.0
    """lambda_occ."""
    ego_weight: float = 0.3
    """lambda_ego. At 1.0 the ego-path loss, which never converges on a few logs, takes about two thirds of the
    encoder's gradient and starves the DINO head (benchmarks/pretrain_gradient_share.py); 0.3 keeps occupancy the
    largest share."""
    dino_weight: float = 0.5
    """lambda_dino."""
    occupancy_pos_weight: float = 1.0
    """Weight of occupied queries in the occupancy BCE."""
    ego_pos_weight: float = 1.0
    """Weight of inside queries in the ego-path BCE."""
    dino_loss: Literal["cosine", "l2"] = "cosine"
    """Feature loss: 1 - cosine similarity, or MSE."""
    dino_standardize: bool = False
    """Standardise each PCA dimension of the DINO targets (reweights low-variance components); off: the PCA feature
    as is."""


@dataclass
class ModelConfig:
    voxelizer: VoxelizerConfig = field(default_factory=VoxelizerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass
class Variant:
    """What a pre-training run supervises. The paper's ladder: ``uno`` (UnO alone: occupancy, no rotation
    augmentation, no missing rays), ``uno_enhanced`` (UnO plus GASP's rotation augmentation and missing-ray
    supervision), ``gasp`` (plus ego path and DINO); the ``gasp_no_*`` variants ablate one part of GASP.
    ``gasp_oracle`` is GASP distilling the oracle teacher's targets (a fixed embedding of the simulator's surface class
    at each point: what a perfect foundation model would give; a control that real data cannot have, never a default).
    ``scratch`` supervises nothing: its "pre-training" saves the seeded initialisation, the from-scratch baseline."""

    @property
    def trains(self) -> bool:
        return self.occupancy or self.ego or self.dino

    occupancy: bool = True
    ego: bool = True
    dino: bool = True
    rotation_augmentation: bool = True
    missing_rays: bool = True
    teacher: str = "teacher"
    """Which DINO targets the third objective distils (``data/targets/dino/<teacher>``, one of
    ``dino_targets.sources``): ``teacher`` (the configured ViT) or ``oracle``."""


VARIANTS: dict[str, Variant] = {
    "scratch": Variant(occupancy=False, ego=False, dino=False, rotation_augmentation=False, missing_rays=False),
    "uno": Variant(ego=False, dino=False, rotation_augmentation=False, missing_rays=False),
    "uno_enhanced": Variant(ego=False, dino=False),
    "gasp": Variant(),
    "gasp_oracle": Variant(teacher="oracle"),
    "gasp_no_ego": Variant(ego=False),
    "gasp_no_dino": Variant(dino=False),
    "gasp_no_rotation": Variant(rotation_augmentation=False),
    "gasp_no_missing_rays": Variant(missing_rays=False),
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown pre-training variant {name!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]
