"""A tiny pre-training setup on the simulated log: 2-sweep history, 0.5 s horizon, a 40 x 40 BEV grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.models.config import DecoderConfig, EncoderConfig, ModelConfig, VoxelizerConfig
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.teacher.dinov2 import TeacherConfig
from gasp_core.train.dataset import QueryCounts
from gasp_core.train.pretrain import PretrainConfig, TrainConfig

TINY_SCENE = SceneConfig(extent_m=(-20.0, 20.0, -20.0, 20.0, -3.0, 5.0), past_sweeps=2, horizon_s=0.5)
TINY_MODEL = ModelConfig(
    voxelizer=VoxelizerConfig(voxel_size_m=1.0, z_bins=4, intensity_levels=()),
    encoder=EncoderConfig(width=16, out_stride=2),
    decoder=DecoderConfig(hidden=32, blocks=1, offsets=2),
)


def tiny_config(steps: int = 6, **train) -> PretrainConfig:
    settings = dict(
        steps=steps,
        batch_size=2,
        lr=3e-3,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        num_workers=0,
        queries=QueryCounts(occupancy=256, ego=64, dino=64),
        device="cpu",
    )
    tc = TrainConfig(**{**settings, **train})
    return PretrainConfig(model=TINY_MODEL, train=tc)


@pytest.fixture(scope="session")
def pretrain_inputs(av2_split, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrain_inputs")
    ingest(
        IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name),
        root / "store",
        progress=False,
    )
    occ = OccupancyLabelsConfig(
        occupancy=OccupancyConfig(stride=2, occupied_per_sample=800, free_per_sample=800, missing_per_sample=200),
        ego_path=EgoPathConfig(positives_per_sample=100, near_per_sample=100, far_per_sample=50),
    )
    build_occupancy_labels(root / "store", out=root / "occupancy", scene=TINY_SCENE, cfg=occ, progress=False)
    dino = DinoTargetsConfig(
        teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8),
        pca_dim=8,
        pca_fit_frames=6,
        frame_stride=1,
    )
    # laid out as the dino_targets stages write it: one folder per source (the stage scripts take the parent)
    dino_dir = root / "dino" / "teacher"
    build_dino_targets(
        root / "store", out=dino_dir, cfg=dino, fit_logs=LogStore(root / "store").log_ids, progress=False
    )
    return {"store": root / "store", "occupancy": root / "occupancy", "dino": dino_dir, "dino_sources": root / "dino"}


def stage_params(pretrain_inputs: dict, path: Path, world_size: int, checkpoint_every: int = 2) -> Path:
    """A params.yaml for ``stages/pretrain.py`` on the tiny inputs: 4 steps of batch 1 on ``world_size`` processes,
    pre-training reading the store's logs (the training split) only."""
    import json

    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params["scene"] = {"extent_m": list(TINY_SCENE.extent_m), "past_sweeps": 2, "horizon_s": 0.5}
    params["pretrain"]["model"] = json.loads(json.dumps(TINY_MODEL, default=lambda o: o.__dict__))
    params["pretrain"]["train"].update(
        steps=4,
        batch_size=1,
        num_workers=0,
        device="cpu",
        checkpoint_every=checkpoint_every,
        log_every=1,
        queries={"occupancy": 128, "ego": 32, "dino": 32},
        warmup_steps=2,
        world_size=world_size,
    )
    params["splits"] = {"train": LogStore(pretrain_inputs["store"]).log_ids, "val": ["v"], "test": ["t"], "pool": []}
    path.write_text(yaml.safe_dump(params))
    return path
