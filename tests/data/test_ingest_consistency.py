"""The same simulated log written as AV2 and as nuScenes ingests to the same content.

Allowed differences are the formats' own: nuScenes has keyframe annotations at 2 Hz only, microsecond
timestamps, no per-point firing times, one lidar, 2D maps and no painted edge lines in its divider layers.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.schema import EgoDims
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.geometry import quat_wxyz_to_rotation

EGO = EgoDims(4.8, 2.0, 1.7, 1.0)


@pytest.fixture(scope="module")
def pair(av2_split, nuscenes_root, tmp_path_factory) -> tuple[StoredLog, StoredLog]:
    out = tmp_path_factory.mktemp("pair")
    ingest(
        IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name, ego=EGO),
        out / "av2",
        progress=False,
    )
    ingest(
        IngestConfig(format="nuscenes", root=str(nuscenes_root), version="v1.0-test", split="all", ego=EGO),
        out / "nus",
        progress=False,
    )
    a, n = LogStore(out / "av2"), LogStore(out / "nus")
    assert len(a.log_ids) == len(n.log_ids) == 1
    return a.log(a.log_ids[0]), n.log(n.log_ids[0])


def us(ns) -> np.ndarray:
    return np.round(np.asarray(ns) / 1000).astype(np.int64)


def test_meta(pair):
    a, n = pair
    assert (a.meta.dataset, n.meta.dataset) == ("av2", "nuscenes")
    assert a.meta.ego == n.meta.ego == EGO
    assert a.meta.point_time_offsets and not n.meta.point_time_offsets
    assert a.meta.num_sweeps == n.meta.num_sweeps


def test_sweeps_and_poses(pair):
    a, n = pair
    np.testing.assert_array_equal(us(a.sweep_timestamps_ns), us(n.sweep_timestamps_ns))
    for ta, tn in zip(a.sweep_timestamps_ns, n.sweep_timestamps_ns):
        sa, sn = a.sweep(ta), n.sweep(tn)
        np.testing.assert_allclose(sn.points_ego, sa.points_ego, atol=2e-5)  # float32 round trip via the lidar frame
        np.testing.assert_array_equal(sn.laser_number, sa.laser_number)
        np.testing.assert_allclose(sn.intensity, sa.intensity)
        assert not sn.offset_ns.any() and sa.offset_ns.max() > 0
        np.testing.assert_allclose(n.city_T_ego(tn)[0], a.city_T_ego(ta)[0], atol=1e-5)
    np.testing.assert_allclose(n.lidar_origins_ego()[0], a.lidar_origins_ego()[0], atol=1e-9)


def test_calibration_and_camera_frames(pair, sim_log):
    a, n = pair
    for spec in sim_log.cfg.camera.rig:
        np.testing.assert_allclose(n.intrinsics(spec.nuscenes_name), a.intrinsics(spec.av2_name), atol=1e-9)
        np.testing.assert_allclose(n.ego_T_sensor(spec.nuscenes_name), a.ego_T_sensor(spec.av2_name), atol=1e-6)
        fa = a.camera_frames.filter(pl.col("camera") == spec.av2_name)["timestamp_ns"].sort().to_numpy()
        fn = n.camera_frames.filter(pl.col("camera") == spec.nuscenes_name)["timestamp_ns"].sort().to_numpy()
        np.testing.assert_array_equal(us(fa), us(fn))
        assert len(fa) > 0


def test_boxes_at_keyframes(pair):
    a, n = pair
    key_times = n.boxes["timestamp_ns"].unique().sort().to_numpy()
    assert len(key_times) == 2  # 1 s at 2 Hz
    matched = 0
    tracks: dict[str, str] = {}  # AV2 track id -> nuScenes instance token
    seen: dict[str, int] = {}
    for tn in key_times:
        ta = a.sweep_timestamps_ns[np.argmin(np.abs(us(a.sweep_timestamps_ns) - us(tn)))]
        ba, bn = a.boxes.filter(pl.col("timestamp_ns") == ta), n.boxes.filter(pl.col("timestamp_ns") == tn)
        assert ba.height == bn.height > 0
        ca, cn = ba.select("tx_m", "ty_m", "tz_m").to_numpy(), bn.select("tx_m", "ty_m", "tz_m").to_numpy()
        pairing = np.argmin(np.linalg.norm(ca[:, None] - cn[None], axis=-1), axis=1)
        assert len(set(pairing)) == len(pairing)  # one-to-one
        np.testing.assert_allclose(cn[pairing], ca, atol=1e-5)
        np.testing.assert_allclose(
            bn.select("length_m", "width_m", "height_m").to_numpy()[pairing],
            ba.select("length_m", "width_m", "height_m").to_numpy(),
            atol=1e-9,
        )
        ra = quat_wxyz_to_rotation(ba.select("qw", "qx", "qy", "qz").to_numpy())
        rn = quat_wxyz_to_rotation(bn.select("qw", "qx", "qy", "qz").to_numpy())[pairing]
        np.testing.assert_allclose(rn, ra, atol=1e-6)
        # the paired boxes are the same object: its track keeps one identity across key frames in both formats
        for track_a, track_n in zip(ba["track_id"].to_list(), [bn["track_id"][int(j)] for j in pairing]):
            assert tracks.setdefault(track_a, track_n) == track_n, f"AV2 track {track_a} pairs with two nuScenes tracks"
            seen[track_a] = seen.get(track_a, 0) + 1
        assert [bn["category"][int(j)] for j in pairing] == ba["category"].to_list()  # one unified mapping
        matched += len(pairing)
    assert matched > 5
    assert len(set(tracks.values())) == len(tracks)  # one-to-one over the whole log
    assert sum(n == len(key_times) for n in seen.values()) > 5  # tracks seen at every key frame: the check has teeth


def _polys(log: StoredLog, layer: str) -> list[Polygon]:
    rows = log.map.filter(pl.col("layer") == layer)
    return [Polygon(np.column_stack([x, y])) for x, y, p in zip(rows["x_m"], rows["y_m"], rows["part"]) if p == 0]


def test_map_layers(pair):
    a, n = pair
    # pedestrian crossings: the same polygons
    pa_, pn = _polys(a, "ped_crossing"), _polys(n, "ped_crossing")
    assert len(pa_) == len(pn) > 0
    for p in pa_:
        assert min(p.symmetric_difference(q).area for q in pn) < 1e-6
    # drivable area and its boundary: the same region
    ua, un = unary_union(_polys(a, "drivable_area")), unary_union(_polys(n, "drivable_area"))
    assert ua.symmetric_difference(un).area < 1e-4 * ua.area
    la = sum(LineString(r).length for r in a.map_layer("road_boundary"))
    ln = sum(LineString(r).length for r in n.map_layer("road_boundary"))
    assert ln == pytest.approx(la, rel=1e-6)
    # dividers: nuScenes' lane and road dividers are AV2's dashed-white and double-yellow lines
    da = a.map.filter(
        (pl.col("layer") == "lane_divider") & pl.col("mark_type").is_in(["DASHED_WHITE", "DOUBLE_SOLID_YELLOW"])
    )
    dn = n.map.filter(pl.col("layer") == "lane_divider")
    assert da.height == dn.height > 0
    lines_n = [LineString(np.column_stack([x, y])) for x, y in zip(dn["x_m"], dn["y_m"])]
    for x, y, mark in zip(da["x_m"], da["y_m"], da["mark_type"]):
        line = LineString(np.column_stack([x, y]))
        k = int(np.argmin([line.hausdorff_distance(m) for m in lines_n]))
        assert line.hausdorff_distance(lines_n[k]) < 1e-6
        assert dn["mark_type"][k] == (mark if mark == "DASHED_WHITE" else "UNKNOWN")  # road dividers carry no mark
