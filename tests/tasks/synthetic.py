"""Hand-made task labels for fine-tuning tests: square blobs in the voxels (the map's first layer is exactly the
blobs), and an ego that drives at a speed of its own while its future path turns at random (odometry can't tell how)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gasp_core.data.samples import SceneConfig
from gasp_core.models.config import DecoderConfig, EncoderConfig, ModelConfig, VoxelizerConfig, variant
from gasp_core.models.gasp_model import GaspModel
from gasp_core.tasks.build import MANIFEST
from gasp_core.tasks.config import SplitsConfig, TaskLabelsConfig

SCENE = SceneConfig(extent_m=(-16.0, 16.0, -16.0, 16.0, -2.0, 4.0), past_sweeps=2, horizon_s=1.0)
VOX = VoxelizerConfig(voxel_size_m=1.0, z_bins=2, intensity_levels=())
LOGS = {"train_a": 4, "train_b": 4, "val": 6, "test": 3}
SPLITS = SplitsConfig(train=["train_a", "train_b"], val=["val"], test=["test"])


def write_labels(root: Path, rng: np.random.Generator, blobs: int = 3, turn_std_m: float = 2.0) -> None:
    root.mkdir(parents=True)
    c, h, w = SCENE.past_sweeps * VOX.z_bins, 32, 32
    for log_id, n in LOGS.items():
        vox = np.zeros((n, c, h, w), bool)
        for s in range(n):
            for _ in range(blobs):
                r, q = rng.integers(2, 26, size=2)
                vox[s, :, r : r + 5, q : q + 5] = True
        mp = np.zeros((n, 4, h, w), bool)
        mp[:, 0] = vox[:, 0]
        speed = rng.uniform(2.0, 10.0, n)
        past_t = np.array([-0.1, 0.0])
        ego_past = np.stack([np.column_stack([v * past_t, np.zeros(2), past_t]) for v in speed]).astype(np.float32)
        wp_t = np.array([0.5, 1.0])
        turn = rng.normal(0.0, turn_std_m, n)
        waypoints = np.stack([np.column_stack([v * wp_t, k * wp_t**2]) for v, k in zip(speed, turn)]).astype(np.float32)
        arrays = {
            "voxels": np.stack([np.packbits(v) for v in vox]),
            "map": np.stack([np.packbits(m) for m in mp]),
            "forecast": np.stack([np.packbits(np.zeros((2, 3, 32, 32), bool)) for _ in range(n)]),
            "waypoints": waypoints,
            "ego_past": ego_past,
            "boxes": np.zeros((0, 7), np.float32),
            "ego_dims": np.array([4.5, 2.0, 1.0], np.float32),
            "t0_ns": np.arange(n, dtype=np.int64),
        }
        np.savez(root / f"{log_id}.npz", **arrays)
    cfg = TaskLabelsConfig(
        bev_resolution_m=1.0, forecast_times_s=[0.0, 1.0], map_resolution_m=1.0, waypoint_times_s=[0.5, 1.0]
    )
    manifest = {
        "logs": LOGS,
        "config": cfg.__dict__,
        "voxel_shape": [c, h, w],
        "forecast_shape": [2, 3, 32, 32],
        "map_shape": [4, h, w],
    }
    (root / MANIFEST).write_text(json.dumps(manifest))


def make_project(root: Path, **label_kw) -> tuple[Path, SplitsConfig]:
    """Labels under ``root/labels`` and a seeded scratch encoder under ``root/models/scratch/seed_0``."""
    write_labels(root / "labels", np.random.default_rng(0), **label_kw)
    model_cfg = ModelConfig(
        VOX,
        EncoderConfig(backbone="resnet10t", out_indices=(0, 1, 2), width=16, out_stride=2),
        DecoderConfig(hidden=16, blocks=1, offsets=0),
    )
    torch.manual_seed(0)
    GaspModel(SCENE, model_cfg, variant("scratch")).save_pretrained(root / "models" / "scratch" / "seed_0")
    return root, SPLITS
