"""Split discipline on stores with several logs: pre-training opens the training logs only, fine-tuning never reads
the test split's labels, and overlapping splits are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gasp_core.config import ConfigError
from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.store import LogStore
from gasp_core.models.config import variant
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig
from gasp_core.tasks.finetune import finetune
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.pretrain import pretrain
from tests.tasks.synthetic import SCENE, make_project
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
    ingest(IngestConfig(format="av2", root=str(split.parent), split=split.name), root / "store", progress=False)
    assert sorted(LogStore(root / "store").log_ids) == sorted([train_id, OTHER_ID])
    occ = OccupancyLabelsConfig(
        occupancy=OccupancyConfig(stride=2, occupied_per_sample=300, free_per_sample=300, missing_per_sample=50),
        ego_path=EgoPathConfig(positives_per_sample=50, near_per_sample=50, far_per_sample=20),
    )
    build_occupancy_labels(root / "store", out=root / "occupancy", scene=TINY_SCENE, cfg=occ, progress=False)
    return {"store": root / "store", "occupancy": root / "occupancy"}, train_id, OTHER_ID


def _record_log_ids(monkeypatch, cls) -> list[str]:
    """Every log id ``cls.log`` is asked for from now on."""
    seen: list[str] = []
    original = cls.log

    def log(self, log_id):
        seen.append(log_id)
        return original(self, log_id)

    monkeypatch.setattr(cls, "log", log)
    return seen


@pytest.fixture
def opened_logs(monkeypatch) -> list[str]:
    """Every log id the log store opens from now on."""
    return _record_log_ids(monkeypatch, LogStore)


def test_pretrain_dataset_opens_only_the_training_logs(two_log_inputs, opened_logs):
    inputs, train_id, other_id = two_log_inputs
    data = PretrainDataset(
        inputs["store"],
        inputs["occupancy"],
        None,
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=32, ego=8, dino=8),
        variant("uno"),
        logs=[train_id],
    )
    assert data.log_ids == [train_id]
    assert data.samples and {s[0] for s in data.samples} == {train_id}
    for index in range(len(data)):
        data[(index, 0)]
    assert opened_logs and set(opened_logs) == {train_id}
    everything = PretrainDataset(
        inputs["store"],
        inputs["occupancy"],
        None,
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=32, ego=8, dino=8),
        variant("uno"),
    )
    assert {s[0] for s in everything.samples} == {train_id, other_id}  # the store does hold the other log
    with pytest.raises(ValueError, match="no such logs"):
        PretrainDataset(
            inputs["store"],
            inputs["occupancy"],
            None,
            TINY_SCENE,
            TINY_MODEL.voxelizer,
            QueryCounts(),
            variant("uno"),
            logs=["not-a-log"],
        )


def test_pretraining_reads_only_the_training_split(two_log_inputs, opened_logs, tmp_path):
    inputs, train_id, other_id = two_log_inputs
    metrics = pretrain(
        "uno",
        store_dir=inputs["store"],
        occupancy_dir=inputs["occupancy"],
        dino_dir=None,
        out_dir=tmp_path / "model",
        scene=TINY_SCENE,
        cfg=tiny_config(steps=2),
        ckpt_dir=tmp_path / "ckpt",
        progress=False,
        logs=[train_id],
    )
    assert metrics["steps"] == 2
    assert opened_logs and other_id not in opened_logs


# --- fine-tuning: synthetic task labels (as tests/tasks/test_finetune.py) -------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("ft_splits"), blobs=1, turn_std_m=0.0)


@pytest.fixture
def read_labels(monkeypatch) -> list[str]:
    """Every log id whose task labels are read from now on."""
    return _record_log_ids(monkeypatch, TaskLabels)


@pytest.mark.parametrize("task, encoder", [("map", "frozen"), ("trajectory", "full")])
def test_finetune_never_reads_the_test_split(project, read_labels, task, encoder):
    root, splits = project
    cfg = FinetuneConfig(
        tasks=[task],
        inits=["scratch"],
        budgets={"low": 0.5, "full": 1.0},
        seeds=[0],
        steps=4,
        batch_size=2,
        lr=1e-2,
        warmup_steps=1,
        encoder=encoder,
        val_every={"trajectory": 2},
        device="cpu",
    )
    res = finetune(
        task,
        "scratch",
        labels_dir=root / "labels",
        occupancy_dir=root,
        init_dir=root / "models" / "scratch",
        out_dir=root / f"runs_{task}",
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        progress=False,
    )
    assert len(res["runs"]) == 2
    assert not set(read_labels) & set(splits.test), f"fine-tuning read test labels: {sorted(set(read_labels))}"
    assert set(read_labels) >= {"train_a", "val"}  # labels were read: the recorder works
    assert set(read_labels) <= set(splits.train) | set(splits.val)


def test_splits_must_not_overlap():
    SplitsConfig(train=["a", "b"], val=["c"], test=["d"])
    for train, val, test, dup in (
        (["a", "b"], ["b"], ["c"], "b"),
        (["a"], ["c"], ["a"], "a"),
        (["a"], ["c"], ["c", "d"], "c"),
        (["a", "a"], ["c"], ["d"], "a"),
    ):
        with pytest.raises(ConfigError, match=f"log {dup} is in both"):
            SplitsConfig(train=train, val=val, test=test)
    for empty in ("train", "val", "test"):
        kw = {"train": ["a"], "val": ["b"], "test": ["c"], empty: []}
        with pytest.raises(ConfigError, match=f"splits.{empty} is empty"):
            SplitsConfig(**kw)


def _run_stage(script: str, argv: list[str], monkeypatch) -> None:
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(Path(__file__).resolve().parents[2] / script), run_name="__main__")


def test_pretraining_stages_read_the_pool_never_validation_or_test(tmp_path, monkeypatch):
    """The study's pre-training stages (the image teacher, the DINO PCA, pre-training) read train + pool: at least 10x
    the low budget's labelled logs, and not one validation or test log."""
    import yaml

    from gasp_core.params import compose

    params = yaml.safe_load(compose(tmp_path / "params.yaml", ["preset=study"]).read_text())
    splits = params["splits"]
    held_out = set(splits["val"]) | set(splits["test"])
    seen: dict[str, list[str]] = {}

    def fake_pretrain(variant_name, *, dino_dir, logs, **kw):
        seen["pretrain"] = list(logs)
        seen["dino"] = [str(dino_dir)]
        return {}

    (tmp_path / "dino" / "teacher").mkdir(parents=True)
    monkeypatch.setattr("gasp_core.train.pretrain.pretrain", fake_pretrain)
    args = ["--params", str(tmp_path / "params.yaml"), "--store", "s", "--occupancy", "o", "--dino"]
    args += [str(tmp_path / "dino"), "--out", "m", "--live", "l", "--metrics", str(tmp_path / "m.json")]
    _run_stage("stages/pretrain.py", ["--variant", "gasp", "--seed", "0", *args], monkeypatch)
    assert seen["dino"] == [str(tmp_path / "dino" / "teacher")]  # the in-domain teacher's targets
    with pytest.raises(SystemExit, match="oracle"):  # gasp_oracle needs the oracle's targets built
        _run_stage("stages/pretrain.py", ["--variant", "gasp_oracle", "--seed", "0", *args], monkeypatch)

    def fake_frames(frames, fit_logs, store):
        seen["fit"] = list(fit_logs)
        raise SystemExit(0)

    monkeypatch.setattr("gasp_core.targets.dino.fit_log_frames", fake_frames)
    monkeypatch.setattr("gasp_core.targets.dino.list_frames", lambda store, stride: [])
    monkeypatch.setattr("gasp_core.data.store.LogStore", lambda root: None)
    with pytest.raises(SystemExit):
        _run_stage(
            "stages/teacher.py",
            [
                "--params",
                str(tmp_path / "params.yaml"),
                "--store",
                "s",
                "--out",
                "t",
                "--metrics",
                str(tmp_path / "t.json"),
            ],
            monkeypatch,
        )
    for name in ("pretrain", "fit"):
        assert sorted(seen[name]) == sorted(splits["train"] + splits["pool"]), name
        assert not set(seen[name]) & held_out, name
    assert len(seen["pretrain"]) >= 10 * 1  # the low budget labels one log (tests/test_configs.py checks that)
