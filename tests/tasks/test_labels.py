"""Downstream labels: exact rasters of known shapes, and labels of the simulated log against the world's truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import shapely
from shapely import affinity
from shapely.geometry import box as shapely_box

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.data.schema import UnifiedCategory
from gasp_core.data.store import LogStore
from gasp_core.models.config import VoxelizerConfig
from gasp_core.sim.semantics import Surface
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig
from gasp_core.tasks.bev import BevGrid, boxes_mask, lines_mask, polygons_mask
from gasp_core.tasks.build import label_log
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.forecast.labels import FORECAST_CLASSES, forecast_labels
from gasp_core.tasks.labels import objects_at
from gasp_core.tasks.map.labels import map_labels
from gasp_core.tasks.metrics import average_precision, collides, iou, l2_at, soft_iou
from gasp_core.tasks.semantic_occupancy.labels import semantic_occupancy
from gasp_core.tasks.trajectory.labels import ego_waypoints

GRID = BevGrid((-4.0, 4.0, -4.0, 4.0), 0.5)  # 16 x 16 cells, centres at +-0.25, +-0.75, ...


def test_box_raster_is_exact():
    m = boxes_mask(GRID, np.array([[0.0, 0.0]]), np.array([0.0]), np.array([2.0]), np.array([1.0]))
    assert m.shape == (16, 16) and m.sum() == 4 * 2  # |x| <= 1 -> 4 columns, |y| <= 0.5 -> 2 rows
    turned = boxes_mask(GRID, np.array([[0.0, 0.0]]), np.array([np.pi / 2]), np.array([2.0]), np.array([1.0]))
    np.testing.assert_array_equal(turned, m.T)


def test_polygon_with_hole_and_line_rasters():
    square = np.array([[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]])
    hole = square / 2
    m = polygons_mask(GRID, [square], [[hole]])
    assert m.sum() == 8 * 8 - 4 * 4
    line = lines_mask(GRID, [np.array([[-2.0, 0.0], [2.0, 0.0]])], width_m=1.0)
    # brute force: cells within 0.5 m of the segment
    c = GRID.centres()
    d = np.hypot(np.clip(np.abs(c[:, 0]) - 2.0, 0, None), c[:, 1])
    np.testing.assert_array_equal(line.ravel(), d <= 0.5)


def test_metrics_by_hand():
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert iou(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(1 / 3)
    assert soft_iou(np.array([0.5, 1.0]), np.array([1, 0])) == pytest.approx(0.5 / (1.0 + 1.0))
    l2 = l2_at(np.array([[1.0, 0], [2, 0], [3, 0]]), np.array([[1.0, 1], [2, 0], [3, 3]]), np.array([1.0, 2, 3]))
    assert l2 == {"l2_1s": 1.0, "l2_2s": 0.0, "l2_3s": 3.0}
    box = [(np.array([[10.0, 0.0]]), np.array([0.0]), np.array([[4.0, 2.0]]))]
    assert collides(np.array([[8.0, 0.0]]), np.array([0.0]), (4.0, 2.0), 1.0, box)  # ego spans x 7..11
    assert not collides(np.array([[8.0, 2.5]]), np.array([0.0]), (4.0, 2.0), 1.0, box)
    assert not collides(np.array([[2.0, 0.0]]), np.array([0.0]), (4.0, 2.0), 1.0, box)


@pytest.fixture(scope="module")
def log(av2_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks_store")
    ingest(
        IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name, map_margin_m=200.0),
        out,
        progress=False,
    )
    store = LogStore(out)
    return store.log(store.log_ids[0])


def test_objects_follow_the_true_tracks(log, sim_log):
    t0 = int(log.sweep_timestamps_ns[2])
    t0_T_city = np.linalg.inv(log.city_T_ego(t0)[0])
    for k in (3, 5):  # exactly at a sweep, and halfway between two sweeps
        t = int(log.sweep_timestamps_ns[k]) + (0 if k == 3 else 50_000_000)
        obj = objects_at(log, t0, t)
        assert len(obj.track_id) > 5
        t_s = (t - sim_log.to_ns(np.array([0.0]))[0]) / 1e9
        tracks = {tr.track_id: tr for tr in sim_log.tracks}
        for tid, c, cat in zip(obj.track_id, obj.center, obj.category):
            xy, _, _ = tracks[tid].state_at(t_s)
            true = t0_T_city[:2, :2] @ xy + t0_T_city[:2, 3]
            assert np.linalg.norm(c[:2] - true) < 0.05  # linear interpolation of smooth motion over 0.1 s
            assert cat in {c.value for c in UnifiedCategory}


def test_forecast_and_semantic_occupancy_cover_the_objects(log):
    t0 = int(log.sweep_timestamps_ns[0])
    grid = BevGrid((-40.0, 40.0, -40.0, 40.0), 0.5)
    times = np.array([0.0, 0.5])
    labels = forecast_labels(log, t0, times, grid)
    assert labels.shape == (2, 3, 160, 160)
    for i, t in enumerate(times):
        obj = objects_at(log, t0, t0 + int(t * 1e9))
        veh = (obj.category == UnifiedCategory.VEHICLE.value) & (np.abs(obj.center[:, :2]) < 39).all(1)
        assert veh.sum() > 0
        col = ((obj.center[veh, 0] + 40) / 0.5).astype(int)
        row = ((obj.center[veh, 1] + 40) / 0.5).astype(int)
        assert labels[i, 0, row, col].all()  # every vehicle centre cell is labelled vehicle
    obj = objects_at(log, t0, t0 + 250_000_000)
    q = np.column_stack([obj.center, np.full(len(obj.center), 0.25)])
    far = np.array([[0.0, 0.0, 30.0, 0.25]])
    lab = semantic_occupancy(log, t0, np.vstack([q, far]))
    np.testing.assert_array_equal(lab[:-1], obj.category + 1)
    assert lab[-1] == 0


def test_map_raster_matches_the_world(log, sim_log):
    t0 = int(log.sweep_timestamps_ns[0])
    grid = BevGrid((-40.0, 40.0, -40.0, 40.0), 0.5)
    maps = map_labels(log, t0, grid)
    assert maps.shape == (4, 160, 160) and maps.any(axis=(1, 2)).all()
    # the drivable raster agrees with the town's ground material at the cell centres
    city = grid.centres() @ log.city_T_ego(t0)[0][:2, :2].T + log.city_T_ego(t0)[0][:2, 3]
    road = np.isin(
        sim_log.town.material_at(city), [Surface.ROAD, Surface.MARKING_WHITE, Surface.MARKING_YELLOW, Surface.CROSSWALK]
    )
    assert (maps[0].ravel() == road).mean() > 0.97
    # painted zebra bars lie in the crossing polygons, give or take one cell (their round caps overshoot by 0.25 m)
    from scipy.ndimage import binary_dilation

    zebra = sim_log.town.material_at(city) == Surface.CROSSWALK
    near_crossing = binary_dilation(maps[1], iterations=1).ravel()
    assert zebra.sum() > 20 and near_crossing[zebra].mean() > 0.98


def test_ego_waypoints(log, sim_log):
    t0 = int(log.sweep_timestamps_ns[0])
    wp = ego_waypoints(log, t0, np.array([0.0, 0.5]))
    np.testing.assert_allclose(wp[0], 0.0, atol=1e-9)
    t0_s = (t0 - sim_log.to_ns(np.array([0.0]))[0]) / 1e9
    poses = sim_log.city_T_ego(np.array([t0_s, t0_s + 0.5]))
    np.testing.assert_allclose(wp[1], (np.linalg.inv(poses[0]) @ poses[1])[:2, 3], atol=1e-6)


def _annotated(log, time_ns: int) -> set[str]:
    """Reference from the store's boxes table: tracks annotated exactly at ``time_ns``, or at both of the
    annotation times around it (0.1 s apart in the simulated log, well within the 0.6 s gap)."""
    b = log.boxes
    ts = np.unique(b["timestamp_ns"].to_numpy())
    ids_at = lambda t: set(b.filter(pl.col("timestamp_ns") == int(t))["track_id"].to_list())  # noqa: E731
    if time_ns in ts:
        return ids_at(time_ns)
    before, after = ts[ts < time_ns], ts[ts > time_ns]
    if not len(before) or not len(after):
        return set()
    return ids_at(before.max()) & ids_at(after.min())


def test_objects_at_returns_every_annotated_track(log, sim_log):
    """Completeness: the returned tracks are exactly those annotated around the time, all of them true tracks;
    a track that appears at the 0.8 s sweep is absent just before it and present from it on."""
    sweeps = np.asarray(log.sweep_timestamps_ns, np.int64)
    t0 = int(sweeps[2])
    true_ids = {tr.track_id for tr in sim_log.tracks}
    seen = []
    for k in range(len(sweeps)):
        for offset in (0, 30_000_000, 50_000_000):
            t = int(sweeps[k]) + offset
            ids = objects_at(log, t0, t).track_id
            expected = _annotated(log, t)
            assert len(ids) == len(set(ids))  # no track twice
            assert set(ids) == expected, (k, offset)
            assert set(ids) <= true_ids
            seen.append(len(expected))
    assert min(seen) == 0 and max(seen) >= 40  # after the last annotation nothing; elsewhere all ~50 tracks
    late = set(log.boxes["track_id"].to_list()) - _annotated(log, int(sweeps[0]))
    assert late  # a track entering mid-log: the case where "on both sides" matters
    assert not late & set(objects_at(log, t0, int(sweeps[7]) + 50_000_000).track_id)
    assert late <= set(objects_at(log, t0, int(sweeps[8])).track_id)
    # gaps wider than max_gap_s are not bridged; exact annotation times need no bridge
    assert objects_at(log, t0, int(sweeps[3]) + 50_000_000, max_gap_s=0.05).track_id == []
    assert set(objects_at(log, t0, int(sweeps[3]), max_gap_s=0.05).track_id) == _annotated(log, int(sweeps[3]))


def _cover_ref(obj, cls, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Whether each point lies in (or on) a shapely polygon of some box of class ``cls``."""
    out = np.zeros(xs.shape, bool)
    for c, a, (length, width), cat in zip(obj.center[:, :2], obj.yaw, obj.size_lwh[:, :2], obj.category):
        if cat == cls.value:
            poly = affinity.translate(
                affinity.rotate(
                    shapely_box(-length / 2, -width / 2, length / 2, width / 2), a, origin=(0, 0), use_radians=True
                ),
                *c,
            )
            out |= shapely.intersects_xy(poly, xs, ys)
    return out


def test_forecast_raster_matches_shapely(log):
    """Every cell of every class and time: covered iff its centre lies in the shapely polygon of a box."""
    t0 = int(log.sweep_timestamps_ns[2])
    grid = BevGrid((-30.0, 30.0, -20.0, 20.0), 0.4)  # not square: rows along y, columns along x
    times = np.array([0.0, 0.25, 0.5])
    labels = forecast_labels(log, t0, times, grid)
    assert labels.shape == (3, len(FORECAST_CLASSES), 100, 150)
    x0, _, y0, _ = grid.extent_m
    ys, xs = np.meshgrid(y0 + (np.arange(100) + 0.5) * 0.4, x0 + (np.arange(150) + 0.5) * 0.4, indexing="ij")
    for i, t in enumerate(times):
        obj = objects_at(log, t0, t0 + int(round(t * 1e9)))
        for j, cls in enumerate(FORECAST_CLASSES):
            np.testing.assert_array_equal(labels[i, j], _cover_ref(obj, cls, xs, ys), err_msg=f"{cls} at {t} s")
    assert labels[:, 0].sum() > 50  # vehicles are drawn (the comparison is not of two empty rasters)


def test_built_forecast_is_the_any_cover_of_half_cells(log, tmp_path):
    """``label_log``'s forecast raster (drawn at half resolution, then pooled): a cell is covered iff any of its
    four half-cells' centres lies in a box, by shapely."""
    sweeps = [int(t) for t in log.sweep_timestamps_ns]
    scene = SceneConfig(extent_m=(-24.0, 24.0, -16.0, 16.0, -3.0, 5.0), past_sweeps=2, horizon_s=0.5)
    cfg = TaskLabelsConfig(
        bev_resolution_m=1.0,
        forecast_times_s=[0.0, 0.3, 0.5],
        waypoint_times_s=[0.5],
        semantic_from_occupancy=5,
        semantic_in_boxes=6,
    )
    # a minimal occupancy-labels folder: the samples table and a few stored queries
    occ = tmp_path / "occupancy" / log.log_id
    occ.mkdir(parents=True)
    pl.DataFrame(
        {"t0_ns": [sweeps[2]], "batch": [0], "past_ns": [sweeps[1:3]], "future_ns": [sweeps[3:8]]}
    ).write_parquet(occ / schema.SAMPLES_FILE)
    batch = pa.record_batch(
        {c: pa.array(np.linspace(0.0, 1.0, 8, dtype=np.float32)) for c in ("x_m", "y_m", "z_m", "t_s")}
    )
    with pa.OSFile(str(occ / schema.OCCUPANCY_FILE), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    arrays = label_log(
        log,
        tmp_path / "occupancy",
        scene,
        VoxelizerConfig(voxel_size_m=1.0, z_bins=2, intensity_levels=()),
        OccupancyLabelsConfig(),
        cfg,
        with_rays=False,
    )
    rows, cols = 32, 48
    f = np.unpackbits(arrays["forecast"][0])[: 3 * 3 * rows * cols].reshape(3, 3, rows, cols).astype(bool)
    yc, xc = np.meshgrid(-16.0 + np.arange(rows) + 0.5, -24.0 + np.arange(cols) + 0.5, indexing="ij")
    subs = [(xc + dx, yc + dy) for dx in (-0.25, 0.25) for dy in (-0.25, 0.25)]  # the half-cells' centres
    centre_only_differs = False
    for i, t in enumerate(cfg.forecast_times_s):
        obj = objects_at(log, sweeps[2], sweeps[2] + int(round(t * 1e9)))
        for j, cls in enumerate(FORECAST_CLASSES):
            sub = [_cover_ref(obj, cls, x, y) for x, y in subs]
            ref = np.logical_or.reduce(sub)
            np.testing.assert_array_equal(f[i, j], ref, err_msg=f"{cls} at {t} s")
            centre_only_differs |= bool((ref != sub[0]).any())  # a subsample would not match
    assert f[:, 0].any(axis=(1, 2)).all() and not f.all()
    assert centre_only_differs
