"""Ingest of a simulated AV2 log: round trip through the store, schemas, reruns, atomicity, the stage CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from gasp_core.data import schema
from gasp_core.data.av2_reader import AV2LogReader
from gasp_core.data.ingest import IngestConfig, ingest, ingest_config_from_dict, ingest_log, open_source
from gasp_core.data.source import overlaps
from gasp_core.data.store import LogStore
from gasp_core.geometry import quat_wxyz_to_rotation

REPO = Path(__file__).resolve().parents[2]


def av2_cfg(split: Path, **kw) -> IngestConfig:
    return IngestConfig(format="av2", root=str(split.parent), split=split.name, **kw)


@pytest.fixture(scope="module")
def store(av2_split, tmp_path_factory) -> LogStore:
    out = tmp_path_factory.mktemp("store")
    ingest(av2_cfg(av2_split), out, progress=False)
    return LogStore(out)


def test_tables_follow_the_schema(store):
    log_dir = store.root / store.log_ids[0]
    for name, sch in (
        (schema.POSES_FILE, schema.POSES),
        (schema.CALIBRATION_FILE, schema.CALIBRATION),
        (schema.SWEEP_INDEX_FILE, schema.SWEEP_INDEX),
        (schema.CAMERA_FRAMES_FILE, schema.CAMERA_FRAMES),
        (schema.BOXES_FILE, schema.BOXES),
        (schema.MAP_FILE, schema.MAP),
    ):
        assert pq.read_schema(log_dir / name).remove_metadata() == sch, name
    first = json.loads((log_dir / schema.META_FILE).read_text())
    assert first["schema_version"] == schema.SCHEMA_VERSION and first["skipped"] == []


def test_round_trip_matches_the_av2_reader(store, av2_split, sim_log):
    reader = AV2LogReader(av2_split, sim_log.log_id)
    log = store.log(sim_log.log_id)
    assert list(log.sweep_timestamps_ns) == reader.lidar_timestamps_ns
    for ts in reader.lidar_timestamps_ns[::3]:
        src, got = reader.sweep(ts), log.sweep(ts)
        np.testing.assert_array_equal(got.points_ego, src.points_ego.astype(np.float32))
        np.testing.assert_array_equal(got.laser_number, src.laser_number)
        np.testing.assert_array_equal(got.offset_ns, src.offset_ns)
        np.testing.assert_allclose(got.intensity, src.intensity)
        # poses at sweep times, and boxes moved to the city frame
        np.testing.assert_allclose(log.city_T_ego(ts)[0], reader.city_T_ego(ts), atol=1e-9)
        boxes = reader.boxes(ts)
        rows = log.boxes.filter(pl.col("timestamp_ns") == ts).sort("track_id")
        order = np.argsort(boxes.track_id)
        city_T_ego = reader.city_T_ego(ts)
        np.testing.assert_allclose(
            rows.select("tx_m", "ty_m", "tz_m").to_numpy(),
            boxes.center[order] @ city_T_ego[:3, :3].T + city_T_ego[:3, 3],
            atol=1e-9,
        )
        np.testing.assert_allclose(
            quat_wxyz_to_rotation(rows.select("qw", "qx", "qy", "qz").to_numpy()),
            city_T_ego[:3, :3] @ boxes.rotation[order],
            atol=1e-9,
        )
    assert log.poses.height == len(reader.pose_arrays[0])
    assert log.boxes.height == len(reader.annotations)
    assert set(log.boxes["category"].unique()) <= {c.label for c in schema.UnifiedCategory}
    # calibration: both lidars and every camera, with intrinsics
    assert log.meta.lidars == ["up_lidar", "down_lidar"]
    np.testing.assert_allclose(log.lidar_origins_ego()[0], sim_log.cfg.lidar.mount_xyz_m)
    for cam in reader.camera_names():
        np.testing.assert_allclose(log.intrinsics(cam), reader.pinhole_camera(cam).intrinsics.K, atol=1e-9)
        np.testing.assert_allclose(
            log.ego_T_sensor(cam), reader.pinhole_camera(cam).ego_SE3_cam.transform_matrix, atol=1e-9
        )
    frames = log.camera_frames
    assert frames.height == len(sim_log.frames)
    assert all(log.image_path(p).is_file() for p in frames["image_path"])
    # the embedded world knows the ego vehicle's size; without its manifest the AV2 default applies
    assert log.meta.ego == schema.DEFAULT_EGO_DIMS["av2"]


def test_map_layers(store, av2_split, sim_log):
    reader = AV2LogReader(av2_split, sim_log.log_id)
    m = reader.static_map
    log = store.log(sim_log.log_id)
    # kept: what meets the ego path's bounding box grown by map_margin_m
    xy = reader.pose_arrays[1][:, :2, 3]
    margin = IngestConfig().map_margin_m
    bounds = (*(xy.min(0) - margin), *(xy.max(0) + margin))
    counts = dict(log.map.group_by("layer").len().iter_rows())
    assert counts["ped_crossing"] == sum(overlaps(p.polygon, bounds) for p in m.vector_pedestrian_crossings.values())
    assert counts["drivable_area"] == sum(overlaps(a.xyz, bounds) for a in m.vector_drivable_areas.values())
    assert 0 < counts["ped_crossing"] < len(m.vector_pedestrian_crossings)  # the town is larger than the margin
    assert counts["road_boundary"] >= 1
    dividers = log.map.filter(pl.col("layer") == "lane_divider")
    assert set(dividers["mark_type"]) <= {"DASHED_WHITE", "DOUBLE_SOLID_YELLOW", "SOLID_WHITE"}
    # every marked non-intersection boundary appears exactly once, although neighbouring lanes share them
    marked = {
        tuple(np.round(b.xyz[[0, -1], :2], 2).ravel())
        for seg in m.vector_lane_segments.values()
        if not seg.is_intersection
        for b, k in ((seg.left_lane_boundary, seg.left_mark_type), (seg.right_lane_boundary, seg.right_mark_type))
        if k.value != "NONE"
    }
    ends = [tuple(np.round([x[0], y[0], x[-1], y[-1]], 2)) for x, y in zip(dividers["x_m"], dividers["y_m"])]
    assert len(ends) == len(set(ends))
    assert set(ends) <= marked
    # the road boundary encloses every drivable area
    from shapely.geometry import Polygon

    boundary_area = sum(
        Polygon(r).area * (1 if p == 0 else -1)
        for r, p in zip(log.map_layer("road_boundary"), log.map.filter(pl.col("layer") == "road_boundary")["part"])
    )
    union = Polygon()
    for ring in log.map_layer("drivable_area"):
        union = union.union(Polygon(ring))
    assert boundary_area == pytest.approx(union.area, rel=1e-6)


def test_rerun_skips_complete_logs_and_redoes_changed_ones(av2_split, tmp_path):
    cfg = av2_cfg(av2_split)
    first = ingest(cfg, tmp_path, progress=False)
    assert (first["logs_ingested"], first["logs_up_to_date"]) == (1, 0)
    meta = next(tmp_path.glob("*/meta.json"))
    stamp = meta.stat().st_mtime_ns
    again = ingest(cfg, tmp_path, progress=False)
    assert (again["logs_ingested"], again["logs_up_to_date"]) == (0, 1)
    assert again["sweeps"] == first["sweeps"] and meta.stat().st_mtime_ns == stamp
    changed = ingest(av2_cfg(av2_split, compression="zstd"), tmp_path, progress=False)
    assert changed["logs_ingested"] == 1


def test_interrupted_log_never_looks_complete(av2_split, sim_log, tmp_path, monkeypatch):
    cfg = av2_cfg(av2_split)
    source = open_source(cfg, sim_log.log_id)
    calls = {"n": 0}
    real = source.read_sweep

    def dying(ref):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the stage were killed mid-log
        return real(ref)

    monkeypatch.setattr(source, "read_sweep", dying)
    with pytest.raises(KeyboardInterrupt):
        ingest_log(source, tmp_path / sim_log.log_id, cfg)
    assert list(tmp_path.iterdir()) == []  # no folder, no temp left behind
    # a complete earlier version survives an interrupted rewrite untouched
    ingest_log(open_source(cfg, sim_log.log_id), tmp_path / sim_log.log_id, cfg)
    before = sorted(p.name for p in (tmp_path / sim_log.log_id / "sweeps").iterdir())
    source = open_source(av2_cfg(av2_split, compression="none"), sim_log.log_id)
    calls["n"] = 0
    real = source.read_sweep
    monkeypatch.setattr(source, "read_sweep", dying)
    with pytest.raises(KeyboardInterrupt):
        ingest_log(source, tmp_path / sim_log.log_id, av2_cfg(av2_split, compression="none"))
    assert sorted(p.name for p in (tmp_path / sim_log.log_id / "sweeps").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == [sim_log.log_id]


def test_params_yaml_ingest_section_is_complete_and_declared():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = ingest_config_from_dict(params["ingest"])
    assert set(params["ingest"]) == set(IngestConfig.__dataclass_fields__)  # every knob visible in params.yaml
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["ingest"]
    assert stage["params"] == ["ingest"] and "stages/ingest.py" in stage["deps"]
    # the code that does the work is a dependency (dvc.yaml lists the import closure, not all of gasp_core)
    assert {"gasp_core/data/ingest.py", "gasp_core/data/av2_reader.py", "gasp_core/data/nuscenes_reader.py"} <= set(
        stage["deps"]
    )
    assert cfg.format == "av2"


def test_stage_cli_writes_store_and_metrics(av2_split, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(root=str(av2_split.parent), split=av2_split.name)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "ingest.py"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(tmp_path / "store"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        check=True,
        cwd=tmp_path,
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["logs_ingested"] == 1 and metrics["sweeps"] == 10 and metrics["sweeps_skipped"] == 0
    assert metrics["store_bytes_per_sweep"] > 0
    assert LogStore(tmp_path / "store").log_ids == AV2LogReader.log_ids(av2_split)
