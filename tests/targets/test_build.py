"""Both target stages end to end on the simulated log: shard schemas, counts, reruns, the CLI scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.ipc as ipc
import pytest
import yaml

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.teacher.dinov2 import TeacherConfig
from gasp_core.teacher.pca import FeaturePCA

REPO = Path(__file__).resolve().parents[2]
SCENE = SceneConfig(past_sweeps=2, horizon_s=0.5)
SMALL = OccupancyLabelsConfig(
    occupancy=OccupancyConfig(stride=2, occupied_per_sample=500, free_per_sample=500, missing_per_sample=200),
    ego_path=EgoPathConfig(positives_per_sample=100, near_per_sample=100, far_per_sample=50),
)


@pytest.fixture(scope="module")
def store_dir(av2_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("targets_store")
    ingest(IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name), out, progress=False)
    return out


def test_occupancy_labels_shards(store_dir, tmp_path, sim_log):
    metrics = build_occupancy_labels(store_dir, out=tmp_path, scene=SCENE, cfg=SMALL, progress=False)
    # 10 sweeps at 10 Hz: t0 at sweep 1, 3 (5 and later lack 0.5 s of future)
    assert metrics["samples"] == 2 and metrics["logs_labelled"] == 1
    log_dir = tmp_path / sim_log.log_id
    samples = pl.read_parquet(log_dir / schema.SAMPLES_FILE)
    assert samples["batch"].to_list() == [0, 1] and all(len(p) == 2 for p in samples["past_ns"])
    assert all(len(f) == 5 for f in samples["future_ns"])
    with ipc.open_file(log_dir / schema.OCCUPANCY_FILE) as f:
        assert f.schema.remove_metadata() == schema.OCCUPANCY and f.num_record_batches == 2
        batch = f.get_batch(1)
        assert batch.num_rows == samples["num_occupancy"][1] == 1200
        occupied = batch.column("occupied").to_numpy()
        assert occupied.sum() == 500 and (batch.column("source").to_numpy()[occupied == 1] == 0).all()
    with ipc.open_file(log_dir / schema.EGO_PATH_FILE) as f:
        assert f.schema.remove_metadata() == schema.EGO_PATH and f.get_batch(0).num_rows == 250
    # a rerun with the same inputs is skipped; a changed setting relabels
    again = build_occupancy_labels(store_dir, out=tmp_path, scene=SCENE, cfg=SMALL, progress=False)
    assert again["logs_up_to_date"] == 1 and again["samples"] == 2
    assert {k: v for k, v in again.items() if not k.startswith("logs_")} == {
        k: v for k, v in metrics.items() if not k.startswith("logs_")
    }


def test_outputs_never_delete_foreign_folders(store_dir, tmp_path, sim_log):
    keep = tmp_path / "occ" / "my_notes"
    keep.mkdir(parents=True)
    build_occupancy_labels(store_dir, out=tmp_path / "occ", scene=SCENE, cfg=SMALL, progress=False)
    assert keep.is_dir()  # not a labelled log: left alone
    (tmp_path / "dino" / "thesis").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="does not look like DINO targets"):
        build_dino_targets(
            store_dir,
            out=tmp_path / "dino",
            cfg=DinoTargetsConfig(teacher=TeacherConfig(weights="random"), pca_dim=8, pca_fit_frames=2, frame_stride=1),
            fit_logs=[sim_log.log_id],
            progress=False,
        )
    assert (tmp_path / "dino" / "thesis").is_dir()


def test_dino_targets(store_dir, tmp_path, sim_log):
    cfg = DinoTargetsConfig(
        teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8),
        pca_dim=8,
        pca_fit_frames=6,
        frame_stride=1,
    )
    metrics = build_dino_targets(store_dir, out=tmp_path, cfg=cfg, fit_logs=[sim_log.log_id], progress=False)
    assert metrics["teacher_random_weights"] is True and metrics["teacher_weights"] == "random"
    assert metrics["frames"] == len(sim_log.frames) and metrics["frames_skipped_no_sweep"] == 0
    assert metrics["points"] > 50 * metrics["frames"]
    pca = FeaturePCA.load(tmp_path / schema.PCA_FILE)
    assert tuple(pca.components.shape) == (8, 384)
    frames = pl.read_parquet(tmp_path / sim_log.log_id / schema.DINO_FRAMES_FILE)
    with ipc.open_file(tmp_path / sim_log.log_id / schema.DINO_POINTS_FILE) as f:
        assert f.schema.remove_metadata() == schema.dino_points_schema(8)
        b = f.get_batch(3)
        assert b.num_rows == frames["num_points"][3]
        feats = np.stack(b.column("feature").to_numpy(zero_copy_only=False))
        assert feats.shape == (b.num_rows, 8) and feats.dtype == np.float16 and np.isfinite(feats).all()
        # each point's firing time is its sweep's time plus an offset within the sweep
        t = b.column("t_ns").to_numpy()
        assert ((t - frames["sweep_ns"][3]) >= 0).all() and ((t - frames["sweep_ns"][3]) < 100_000_000).all()
    assert json.loads((tmp_path / schema.TEACHER_FILE).read_text())["random_weights"] is True
    # reruns are byte-identical (random weights are seeded), so DVC sees the same outputs
    again = build_dino_targets(store_dir, out=tmp_path / "again", cfg=cfg, fit_logs=[sim_log.log_id], progress=False)
    assert again == metrics
    for name in (schema.PCA_FILE, f"{sim_log.log_id}/{schema.DINO_POINTS_FILE}"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_labelled_targets_carry_each_points_surface_and_colour(store_dir, tmp_path, sim_log):
    """With surface labels in the store, every target point keeps the class of the lidar return it was lifted from
    and the colour of its pixel, and the stage scores the probe from both."""
    from gasp_core.data.store import LogStore
    from gasp_core.sim.semantics import ALBEDO, Surface

    cfg = DinoTargetsConfig(
        teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8),
        pca_dim=8,
        pca_fit_frames=6,
        frame_stride=1,
    )
    lid = sim_log.log_id
    metrics = build_dino_targets(store_dir, out=tmp_path, cfg=cfg, fit_logs=[lid], progress=False, test_logs=[lid])
    assert set(metrics["probe"]) == {"rgb", "teacher"}
    for p in metrics["probe"].values():
        assert 0.0 <= p["mIoU"] <= p["accuracy"] <= 1.0 and p["test_points"] > 100
    log = LogStore(store_dir).log(lid)
    frames = pl.read_parquet(tmp_path / lid / schema.DINO_FRAMES_FILE)
    surf, rgb = [], []
    with ipc.open_file(tmp_path / lid / schema.DINO_POINTS_FILE) as f:
        assert f.schema.remove_metadata() == schema.dino_points_schema(8, labelled=True)
        for b in range(0, f.num_record_batches, 5):
            batch, sweep = f.get_batch(b), log.sweep(frames["sweep_ns"][b])
            xyz = np.column_stack([batch.column(c).to_numpy() for c in ("x_m", "y_m", "z_m")])
            # the stored point is a return of its sweep: look it up by its exact coordinates
            lookup = {tuple(p): s for p, s in zip(sweep.points_ego.tolist(), sweep.surface.tolist())}
            truth = [lookup[tuple(p)] for p in xyz.tolist()]
            np.testing.assert_array_equal(batch.column("surface").to_numpy(), truth)
            surf.append(np.asarray(truth))
            rgb.append(np.stack(batch.column("rgb").to_numpy(zero_copy_only=False)).astype(np.float64))
    surf, rgb = np.concatenate(surf), np.concatenate(rgb)
    # the pixel colours follow the simulator's albedo: grass and foliage points are green, road points grey
    for green in (Surface.GRASS, Surface.FOLIAGE):
        if (surf == green).sum() > 20:
            c = rgb[surf == green].mean(0)
            assert c[1] > c[0] and c[1] > c[2] and ALBEDO[green][1] > ALBEDO[green][0]
    road = rgb[surf == Surface.ROAD]
    assert len(road) > 20 and np.abs(road.mean(0) - road.mean()).max() < 12


def test_stage_scripts_and_dvc_declarations(store_dir, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["occupancy_labels"]["params"] == ["scene", "occupancy_labels"]
    # one dino_targets stage per source; the PCA is fitted on the pre-training pool; the probe scored on the test logs
    assert stages["dino_targets"]["foreach"] == "${dino_targets.sources}"
    stages["dino_targets"] = stages["dino_targets"]["do"]
    assert stages["dino_targets"]["params"] == ["dino_targets", "splits.train", "splits.pool", "splits.test"]
    for name in ("occupancy_labels", "dino_targets"):
        deps = set(stages[name]["deps"])
        assert {f"stages/{name}.py", "data/store"} <= deps
        # the target builders are dependencies (dvc.yaml lists the import closure, not all of gasp_core)
        assert "gasp_core/targets" in deps or "gasp_core/targets/build.py" in deps
    assert "gasp_core/teacher/dinov2.py" in stages["dino_targets"]["deps"]
    assert "models/teacher" in stages["dino_targets"]["deps"] and stages["teacher"]["outs"] == ["models/teacher"]
    params["scene"] = {"extent_m": [-40, 40, -40, 40, -3, 5], "past_sweeps": 2, "horizon_s": 0.5}
    params["occupancy_labels"]["occupancy"]["stride"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "occupancy_labels.py"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--store",
            str(store_dir),
            "--out",
            str(tmp_path / "occ"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["samples"] == 1 and 0.3 < m["occupied_fraction"] < 0.5  # stride 5: only sweep 1 has 0.5 s of future
