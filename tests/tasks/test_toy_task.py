"""A new task end to end, registered at runtime from a file under tests/: its labels are built beside every other
task's (whose bytes stay the same), a head fine-tunes, evaluate scores it and the report gives it a row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.models.config import DecoderConfig, EncoderConfig, ModelConfig, VoxelizerConfig, variant
from gasp_core.models.gasp_model import GaspModel
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.tasks import build, registry
from gasp_core.tasks.build import MANIFEST, TaskLabels, build_task_labels
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig, TaskLabelsConfig
from gasp_core.tasks.evaluation import evaluate_runs, save_arrays, save_qualitative
from gasp_core.tasks.finetune import finetune
from gasp_core.tasks.report import build_report
from gasp_core.tasks.stats import BootstrapConfig
from tests.tasks.toy_task import ToyLabels, ToyTask

SCENE = SceneConfig(extent_m=(-16.0, 16.0, -16.0, 16.0, -3.0, 5.0), past_sweeps=2, horizon_s=0.5)
VOX = VoxelizerConfig(voxel_size_m=1.0, z_bins=2, intensity_levels=())
LABELS_CFG = TaskLabelsConfig(
    forecast_times_s=[0.0, 0.5], waypoint_times_s=[0.5], semantic_from_occupancy=50, semantic_in_boxes=20
)
OCC = OccupancyLabelsConfig(
    occupancy=OccupancyConfig(stride=4, occupied_per_sample=200, free_per_sample=200, missing_per_sample=50),
    ego_path=EgoPathConfig(positives_per_sample=20, near_per_sample=20, far_per_sample=10),
)


@pytest.fixture(scope="module")
def inputs(av2_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    ingest(IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name), root / "store", progress=False)
    build_occupancy_labels(root / "store", out=root / "occupancy", scene=SCENE, cfg=OCC, progress=False)
    return root, LogStore(root / "store").log_ids[0]


def _labels(root, out, log_id):
    return build_task_labels(
        root / "store",
        root / "occupancy",
        out=out,
        scene=SCENE,
        vox=VOX,
        occ_cfg=OCC,
        cfg=LABELS_CFG,
        logs=[log_id],
        progress=False,
        ray_logs=[],
    )


def test_a_registered_task_runs_from_labels_to_its_report_row(inputs, av2_split, tmp_path):
    root, log_id = inputs
    _labels(root, tmp_path / "before", log_id)
    with registry.registered(ToyTask):
        assert registry.task_names()[-1] == "toy_drive" and build.LABEL_BUILDERS[-1] is ToyLabels
        _labels(root, tmp_path / "labels", log_id)
        # the other tasks' labels are what they were without the toy task: its builder draws after theirs
        with np.load(tmp_path / "before" / f"{log_id}.npz") as a, np.load(tmp_path / "labels" / f"{log_id}.npz") as b:
            assert [k for k in b.files if k != "toy_drive_m"] == a.files
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            drive, samples = b["toy_drive_m"], len(b["t0_ns"])
        assert drive.shape == (samples,) and np.all(drive > 0)
        # three "logs" with the one simulated log's labels, so that train, val and test are apart
        manifest = json.loads((tmp_path / "labels" / MANIFEST).read_text())
        for copy in ("val_log", "test_log"):
            (tmp_path / "labels" / f"{copy}.npz").write_bytes((tmp_path / "labels" / f"{log_id}.npz").read_bytes())
            manifest["logs"][copy] = manifest["logs"][log_id]
        (tmp_path / "labels" / MANIFEST).write_text(json.dumps(manifest))
        splits = SplitsConfig(train=[log_id], val=["val_log"], test=["test_log"])
        model_cfg = ModelConfig(
            VOX,
            EncoderConfig(backbone="resnet10t", out_indices=(0, 1, 2), width=16, out_stride=2),
            DecoderConfig(hidden=16, blocks=1, offsets=0),
        )
        torch.manual_seed(0)
        GaspModel(SCENE, model_cfg, variant("scratch")).save_pretrained(tmp_path / "models" / "scratch" / "seed_0")
        cfg = FinetuneConfig(
            tasks=["toy_drive"],
            inits=["scratch"],
            budgets={"full": 1.0},
            seeds=[0],
            steps=40,
            batch_size=2,
            lr=3e-2,
            warmup_steps=2,
            device="cpu",
        )
        res = finetune(
            "toy_drive",
            "scratch",
            labels_dir=tmp_path / "labels",
            occupancy_dir=root / "occupancy",
            init_dir=tmp_path / "models" / "scratch",
            out_dir=tmp_path / "runs" / "toy_drive" / "scratch",
            scene=SCENE,
            splits=splits,
            cfg=cfg,
            progress=False,
        )
        run = res["runs"]["full/pretrain_0/seed_0"]
        assert run["loss_final"] < 0.5 * run["loss_first"]
        metrics, qualitative, stats = evaluate_runs(
            "toy_drive",
            inits={"scratch": tmp_path / "models" / "scratch"},
            runs_root=tmp_path / "runs" / "toy_drive",
            labels_dir=tmp_path / "labels",
            occupancy_dir=root / "occupancy",
            scene=SCENE,
            splits=splits,
            cfg=cfg,
            progress=False,
        )
        mae = metrics["results"]["scratch"]["full"]["mean"]["MAE_m"]
        assert 0 <= mae < float(np.mean(drive))  # better than guessing zero
        (tmp_path / "metrics").mkdir()
        (tmp_path / "metrics" / "toy_drive.json").write_text(json.dumps(metrics))
        save_qualitative(tmp_path / "eval" / "toy_drive" / "qualitative.npz", qualitative)
        save_arrays(tmp_path / "eval" / "toy_drive" / "stats.npz", stats)
        flat = build_report(
            tmp_path / "metrics",
            tmp_path / "eval",
            labels_dir=tmp_path / "labels",
            out=tmp_path / "report",
            splits=splits,
            cfg=cfg,
            bootstrap=BootstrapConfig(replicates=50),
            store=root / "store",
        )
        assert flat["toy_drive/full/scratch/MAE_m"] == pytest.approx(mae, abs=1e-4)
        readme = (tmp_path / "report" / "README.md").read_text()
        assert f"| Toy ego distance (mean abs. error, m ↓) | {mae:.3f} [" in readme
        assert "### Toy ego distance\n\n| init | budget | bias_m |" in readme
        # the header's pool time against the raw AV2 log's lidar sweep file names, not the store
        sweep_ns = sorted(int(f.stem) for f in (av2_split / log_id / "sensors" / "lidar").glob("*.feather"))
        seconds = (sweep_ns[-1] - sweep_ns[0]) / 1e9
        assert f"1 logs, {seconds / 3600:.3g} h of driving ({seconds:,.0f} s)" in readme
    assert "toy_drive" not in registry.TASK_CLASSES and ToyLabels not in build.LABEL_BUILDERS
    assert TaskLabels(tmp_path / "labels").log(log_id)["toy_drive_m"].shape == drive.shape
