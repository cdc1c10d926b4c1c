"""Ingest's settings: :class:`IngestConfig` (the ``ingest`` section of params.yaml) and its parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gasp_core.config import from_dict
from gasp_core.data.schema import EgoDims


@dataclass
class IngestConfig:
    format: Literal["av2", "nuscenes"] = "av2"
    """Source dataset layout."""
    root: str = "data/raw/av2"
    """AV2: the folder holding split folders; nuScenes: the dataroot (holding ``version``/ and maps/)."""
    split: str = "train"
    """AV2: split folder under ``root``; nuScenes: a devkit scene split (``train``, ``val``, ``mini_train``, ...) or
    ``all``."""
    version: str = "v1.0-trainval"
    """nuScenes table version (ignored for AV2)."""
    logs: list[str] | None = None
    """Log ids (AV2) or scene names (nuScenes) to ingest; null for every log of the split."""
    on_bad_sweep: Literal["skip", "error"] = "skip"
    """A sweep that is missing, truncated, empty or holds NaN/inf: skip it (logged and counted) or stop."""
    max_bad_sweep_fraction: float = 0.1
    """Above this fraction of skipped sweeps a log fails anyway: that is not one corrupt sweep."""
    on_bad_log: Literal["error", "skip"] = "error"
    """A log that cannot be ingested (missing poses, calibration, ...): stop the stage, or skip it and count it."""
    on_unknown_category: Literal["error", "other"] = "error"
    """A box category missing from gasp_core.data.categories: stop, or map it to ``other`` and count it."""
    compression: Literal["lz4", "zstd", "none"] = "lz4"
    """Compression of the sweep files (lz4 decodes ~3x faster than zstd for ~14% more bytes)."""
    map_margin_m: float = 80.0
    """Map elements that meet the ego path's bounding box grown by this margin are kept (nuScenes maps are
    city-wide)."""
    ego: EgoDims | None = None
    """Override the ego vehicle's dimensions (default: the embedded world's, else the dataset's published ones)."""


def ingest_config_from_dict(data, strict: bool = False) -> IngestConfig:
    return from_dict(IngestConfig, data, "ingest", strict)
