"""Downstream labels: exact rasters of known shapes, and labels of the simulated log against the world's truth."""

from __future__ import annotations

import numpy as np
import pytest

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.schema import UnifiedCategory
from gasp_core.data.store import LogStore
from gasp_core.sim.semantics import Surface
from gasp_core.tasks.bev import BevGrid, boxes_mask, lines_mask, polygons_mask
from gasp_core.tasks.labels import ego_waypoints, forecast_labels, map_labels, objects_at, semantic_occupancy
from gasp_core.tasks.metrics import average_precision, collides, iou, l2_at, soft_iou

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
    ingest(IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name, workers=1, map_margin_m=200.0),
           out, progress=False)
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
    road = np.isin(sim_log.town.material_at(city), [Surface.ROAD, Surface.MARKING_WHITE, Surface.MARKING_YELLOW, Surface.CROSSWALK])
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
