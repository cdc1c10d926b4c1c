"""Split discipline on stores with several logs: pre-training opens the training logs only, fine-tuning never reads
the test split's labels, and overlapping splits are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gasp_core.config import ConfigError
from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.models.config import DecoderConfig, EncoderConfig, ModelConfig, VoxelizerConfig, variant
from gasp_core.models.gasp_model import GaspModel
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.tasks.build import MANIFEST, TaskLabels
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig, TaskLabelsConfig
from gasp_core.tasks.finetune import finetune
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.pretrain import pretrain
from tests.train.conftest import TINY_MODEL, TINY_SCENE, tiny_config

OTHER_ID = "00000000-0000-0000-0000-0000000000ab"


@pytest.fixture(scope="module")
def two_log_inputs(av2_split, tmp_path_factory) -> tuple[dict[str, Path], str, str]:
    """A store of two logs (the simulated one and a copy under another id) with occupancy labels for both."""
    root = tmp_path_factory.mktemp("two_logs")
    split = root / "raw" / "train"
    shutil.copytree(av2_split, split)
    train_id = next(p.name for p in split.iterdir() if p.is_dir())
    shutil.copytree(split / train_id, split / OTHER_ID)
    ingest(IngestConfig(format="av2", root=str(split.parent), split=split.name, workers=1), root / "store", progress=False)
    assert sorted(LogStore(root / "store").log_ids) == sorted([train_id, OTHER_ID])
    occ = OccupancyLabelsConfig(occupancy=OccupancyConfig(stride=2, occupied_per_sample=300, free_per_sample=300, missing_per_sample=50),
                                ego_path=EgoPathConfig(positives_per_sample=50, near_per_sample=50, far_per_sample=20), workers=1)
    build_occupancy_labels(root / "store", root / "occupancy", TINY_SCENE, occ, progress=False)
    return {"store": root / "store", "occupancy": root / "occupancy"}, train_id, OTHER_ID


@pytest.fixture
def opened_logs(monkeypatch) -> list[str]:
    """Every log id the log store opens from now on."""
    opened: list[str] = []
    original = LogStore.log

    def log(self, log_id):
        opened.append(log_id)
        return original(self, log_id)

    monkeypatch.setattr(LogStore, "log", log)
    return opened


def test_pretrain_dataset_opens_only_the_training_logs(two_log_inputs, opened_logs):
    inputs, train_id, other_id = two_log_inputs
    data = PretrainDataset(inputs["store"], inputs["occupancy"], None, TINY_SCENE, TINY_MODEL.voxelizer,
                           QueryCounts(occupancy=32, ego=8, dino=8), variant("uno"), logs=[train_id])
    assert data.log_ids == [train_id]
    assert data.samples and {s[0] for s in data.samples} == {train_id}
    for index in range(len(data)):
        data[(index, 0)]
    assert opened_logs and set(opened_logs) == {train_id}
    everything = PretrainDataset(inputs["store"], inputs["occupancy"], None, TINY_SCENE, TINY_MODEL.voxelizer,
                                 QueryCounts(occupancy=32, ego=8, dino=8), variant("uno"))
    assert {s[0] for s in everything.samples} == {train_id, other_id}  # the store does hold the other log
    with pytest.raises(ValueError, match="no such logs"):
        PretrainDataset(inputs["store"], inputs["occupancy"], None, TINY_SCENE, TINY_MODEL.voxelizer, QueryCounts(), variant("uno"),
                        logs=["not-a-log"])


def test_pretraining_reads_only_the_training_split(two_log_inputs, opened_logs, tmp_path):
    inputs, train_id, other_id = two_log_inputs
    metrics = pretrain("uno", inputs["store"], inputs["occupancy"], None, tmp_path / "model", TINY_SCENE, tiny_config(steps=2),
                       tmp_path / "ckpt", progress=False, logs=[train_id])
    assert metrics["steps"] == 2
    assert opened_logs and other_id not in opened_logs


# --- fine-tuning: synthetic task labels (as tests/tasks/test_finetune.py) -------------------------------------------

SCENE = SceneConfig(extent_m=(-16.0, 16.0, -16.0, 16.0, -2.0, 4.0), past_sweeps=2, horizon_s=1.0)
VOX = VoxelizerConfig(voxel_size_m=1.0, z_bins=2)
LOGS = {"train_a": 3, "train_b": 3, "val": 3, "test": 3}


def _write_labels(root: Path, rng: np.random.Generator) -> None:
    root.mkdir(parents=True)
    c, h, w = SCENE.past_sweeps * VOX.z_bins, 32, 32
    for log_id, n in LOGS.items():
        vox = np.zeros((n, c, h, w), bool)
        for s in range(n):
            r, q = rng.integers(2, 26, size=2)
            vox[s, :, r:r + 5, q:q + 5] = True
        mp = np.zeros((n, 4, h, w), bool)
        mp[:, 0] = vox[:, 0]
        speed = rng.uniform(2.0, 10.0, n)
        past_t = np.array([-0.1, 0.0])
        ego_past = np.stack([np.column_stack([v * past_t, np.zeros(2), past_t]) for v in speed]).astype(np.float32)
        wp_t = np.array([0.5, 1.0])
        waypoints = np.stack([np.column_stack([v * wp_t, np.zeros(2)]) for v in speed]).astype(np.float32)
        arrays = {"voxels": np.stack([np.packbits(v) for v in vox]), "map": np.stack([np.packbits(m) for m in mp]),
                  "forecast": np.stack([np.packbits(np.zeros((2, 3, 32, 32), bool)) for _ in range(n)]),
                  "waypoints": waypoints, "ego_past": ego_past, "boxes": np.zeros((0, 7), np.float32),
                  "ego_dims": np.array([4.5, 2.0, 1.0], np.float32), "t0_ns": np.arange(n, dtype=np.int64)}
        np.savez(root / f"{log_id}.npz", **arrays)
    cfg = TaskLabelsConfig(bev_resolution_m=1.0, forecast_times_s=[0.0, 1.0], map_resolution_m=1.0, waypoint_times_s=[0.5, 1.0])
    manifest = {"logs": LOGS, "config": cfg.__dict__, "voxel_shape": [c, h, w], "forecast_shape": [2, 3, 32, 32],
                "map_shape": [4, h, w]}
    (root / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft_splits")
    _write_labels(root / "labels", np.random.default_rng(0))
    model_cfg = ModelConfig(VOX, EncoderConfig(backbone="resnet10t", out_indices=(0, 1, 2), width=16, out_stride=2),
                            DecoderConfig(hidden=16, blocks=1, offsets=0))
    torch.manual_seed(0)
    GaspModel(SCENE, model_cfg, variant("scratch")).save_pretrained(root / "models" / "scratch" / "seed_0")
    splits = SplitsConfig(train=["train_a", "train_b"], val=["val"], test=["test"])
    return root, splits


@pytest.fixture
def read_labels(monkeypatch) -> list[str]:
    """Every log id whose task labels are read from now on."""
    read: list[str] = []
    original = TaskLabels.log

    def log(self, log_id):
        read.append(log_id)
        return original(self, log_id)

    monkeypatch.setattr(TaskLabels, "log", log)
    return read


@pytest.mark.parametrize("task, encoder", [("map", "frozen"), ("trajectory", "full")])
def test_finetune_never_reads_the_test_split(project, read_labels, task, encoder):
    root, splits = project
    cfg = FinetuneConfig(tasks=[task], inits=["scratch"], budgets={"low": 0.5, "full": 1.0}, seeds=[0], steps=4, batch_size=2,
                         lr=1e-2, warmup_steps=1, encoder=encoder, val_every={"trajectory": 2}, device="cpu")
    res = finetune(task, "scratch", root / "labels", root, root / "models" / "scratch", root / f"runs_{task}", SCENE, splits, cfg,
                   progress=False)
    assert len(res["runs"]) == 2
    assert not set(read_labels) & set(splits.test), f"fine-tuning read test labels: {sorted(set(read_labels))}"
    assert set(read_labels) >= {"train_a", "val"}  # labels were read: the recorder works
    assert set(read_labels) <= set(splits.train) | set(splits.val)


def test_splits_must_not_overlap():
    SplitsConfig(train=["a", "b"], val=["c"], test=["d"])
    for train, val, test, dup in ((["a", "b"], ["b"], ["c"], "b"), (["a"], ["c"], ["a"], "a"), (["a"], ["c"], ["c", "d"], "c"),
                                  (["a", "a"], ["c"], ["d"], "a")):
        with pytest.raises(ConfigError, match=f"log {dup} is in both"):
            SplitsConfig(train=train, val=val, test=test)
    for empty in ("train", "val", "test"):
        kw = {"train": ["a"], "val": ["b"], "test": ["c"], empty: []}
        with pytest.raises(ConfigError, match=f"splits.{empty} is empty"):
            SplitsConfig(**kw)
