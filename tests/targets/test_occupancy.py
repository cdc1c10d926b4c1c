"""Occupancy queries on analytic scenes: every label is checked against the known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.geometry import spherical
from gasp_core.targets.occupancy import OccupancyConfig, QuerySource, occupancy_queries, sample_rays
from tests.targets.conftest import DT_NS, ELEVATIONS, N_AZ, AnalyticLog, box_then_wall, scan, wall

SCENE = SceneConfig(extent_m=(-80.0, 80.0, -80.0, 80.0, -5.0, 10.0), past_sweeps=5, horizon_s=3.0)
EXACT = OccupancyConfig(origin_time_bins=1000, occupied_per_sample=4000, free_per_sample=4000, missing_per_sample=2000)


def t0_sample(log):
    samples = select_samples(log.sweep_timestamps_ns, SCENE, stride=5)
    assert [s.index for s in samples] == [4]  # 35 sweeps: t0 needs 4 before it and 3 s after it
    assert len(samples[0].future_ns) == 30
    return samples[0]


def test_rays_in_the_t0_frame_are_exact(wall_log):
    sample = t0_sample(wall_log)
    returned, _ = sample_rays(wall_log, sample, EXACT)
    t0_x = 10.0 * sample.t0_ns / 1e9
    # endpoints lie on the wall (city x = 60) whatever sweep they came from
    np.testing.assert_allclose(returned.endpoints[:, 0] + t0_x, 60.0, atol=1e-9)
    # each origin is the lidar at the firing time: x = v (t0 + t) + mount_x, in the t0 frame
    np.testing.assert_allclose(returned.origins[:, 0], 10.0 * returned.t_s + 1.0, atol=1e-3)  # 0.1 ms bins
    np.testing.assert_allclose(returned.origins[:, 2], 2.0, atol=1e-12)
    assert 0.0 <= returned.t_s.min() < 0.05 and 3.0 < returned.t_s.max() < 3.1  # firing times span t0 .. t0 + 3.1 s


def test_occupied_and_free_queries_on_a_wall(wall_log):
    sample = t0_sample(wall_log)
    returned, missing = sample_rays(wall_log, sample, EXACT)
    q = occupancy_queries(returned, missing, SCENE, EXACT, np.random.default_rng(0))
    x_city = q.xyz[:, 0] + 10.0 * sample.t0_ns / 1e9
    occ = q.source == QuerySource.RETURN
    free = q.source == QuerySource.FREE
    assert occ.sum() == 4000 and free.sum() == 4000 and (q.occupied == occ).all()
    # occupied: in [range, range + delta_occ] along the ray -> just behind the wall
    assert (x_city[occ] >= 60.0 - 1e-9).all() and (x_city[occ] <= 60.0 + EXACT.delta_occ_m + 1e-9).all()
    # free: before the wall by at least delta_free along the ray
    d = returned.dirs[q.ray[free]]
    assert (x_city[free] <= 60.0 - EXACT.delta_free_m * d[:, 0] + 1e-9).all()
    # ... and on their ray
    o = returned.origins[q.ray[free]]
    v = q.xyz[free] - o
    np.testing.assert_allclose(np.linalg.norm(np.cross(v, d), axis=1), 0.0, atol=1e-9)
    assert (np.einsum("ij,ij->i", v, d) >= 0).all()
    # times are the firing times of the rays
    np.testing.assert_allclose(q.t_s[occ], returned.t_s[q.ray[occ]])
    inside = np.all((q.xyz >= SCENE.box_min - 1e-9) & (q.xyz <= SCENE.box_max + 1e-9), axis=1)
    assert inside[~occ].all()


def test_missing_rays_are_exactly_the_empty_scan_cells(wall_log):
    sample = t0_sample(wall_log)
    returned, missing = sample_rays(wall_log, sample, EXACT)
    n_sweeps = 31  # t0 and 30 future sweeps
    # the wall is hit for |azimuth| < 90 deg; the 90 backward bins per laser are empty, minus the one
    # neighbour on each side kept by dilation; lasers below -1 deg give no missing rays: 3 lasers remain
    assert len(missing.t_s) == n_sweeps * 3 * (N_AZ // 2 - 2)
    az, el = spherical(missing.dirs)
    assert (np.abs(az) > np.deg2rad(91.0)).all()
    assert set(np.round(np.rad2deg(el), 6)) == {0.0, 5.0, 10.0}
    q = occupancy_queries(returned, missing, SCENE, EXACT, np.random.default_rng(1))
    m = q.source == QuerySource.MISSING
    assert m.sum() == EXACT.missing_per_sample and not q.occupied[m].any()
    dist = np.linalg.norm(q.xyz[m] - missing.origins[q.ray[m] - len(returned.t_s)], axis=1)
    assert (dist <= EXACT.missing_range_m + 1e-9).all()
    assert (missing.t_s >= 0).all() and (missing.t_s <= 3.1).all()


def test_box_in_front_of_a_wall():
    box_min, box_max = np.array([20.0, -1.0, 0.0]), np.array([22.0, 1.0, 3.0])
    log = AnalyticLog(speed_mps=0.0)
    for k in range(35):
        log.sweeps[k * DT_NS] = scan(log, k * DT_NS, box_then_wall(box_min, box_max, 40.0), ELEVATIONS, 720)
    sample = t0_sample(log)
    returned, missing = sample_rays(log, sample, EXACT)
    q = occupancy_queries(returned, missing, SCENE, EXACT, np.random.default_rng(2))
    x, y, z = q.xyz.T
    in_box = (x > box_min[0]) & (x < box_max[0]) & (np.abs(y) < 1.0) & (z > 0.0) & (z < 3.0)
    occ = q.occupied == 1
    on_face = (
        (np.abs(y) <= 1.0 + 1e-9)
        & (z >= -1e-9)
        & (z <= 3.0 + 1e-9)
        & (x >= 20.0 - 1e-9)
        & (x <= 20.0 + EXACT.delta_occ_m + 1e-9)
    )
    on_wall = (x >= 40.0 - 1e-9) & (x <= 40.0 + EXACT.delta_occ_m + 1e-9)
    assert (on_face | on_wall)[occ].all()
    assert on_face[occ].sum() > 10  # the box is seen
    assert not in_box[~occ].any()  # no free query inside the box
    assert (x[~occ] < 40.0).all()  # nor behind the wall
    # a free query with |y| < 1 and 0 < z < 3 comes before the box
    shadow = (np.abs(y) < 0.99) & (z > 0.01) & (z < 2.99) & ~occ & (q.source == QuerySource.FREE)
    assert shadow.sum() > 10 and (x[shadow] <= 20.0).all()


def test_disabling_missing_rays():
    log = AnalyticLog(speed_mps=5.0)
    for k in range(35):
        log.sweeps[k * DT_NS] = scan(
            log, k * DT_NS, box_then_wall(np.array([20.0, -1, 0]), np.array([22.0, 1, 3]), 40.0), ELEVATIONS, 90
        )
    cfg = OccupancyConfig(missing_per_sample=0)
    returned, missing = sample_rays(log, t0_sample(log), cfg)
    assert missing is None
    q = occupancy_queries(returned, missing, SCENE, cfg, np.random.default_rng(0))
    assert not (q.source == QuerySource.MISSING).any()


@pytest.mark.parametrize("n_az", [90, 180, 720])
def test_scan_pattern_resolution_is_inferred(n_az):
    from gasp_core.targets.scan_pattern import infer_pattern

    log = AnalyticLog(speed_mps=0.0)
    sw = scan(log, 0, wall(60.0), ELEVATIONS, n_az)
    az, el = spherical(sw.points_ego - np.array(log.mount_m))
    pattern = infer_pattern(az, el, sw.laser_number.astype(np.int64), min_returns=10)
    assert pattern.azimuth_bins == n_az
    np.testing.assert_allclose(np.rad2deg(pattern.elevation_rad), ELEVATIONS, atol=1e-9)


@pytest.mark.parametrize("turn", [+1.0, -1.0], ids=["counter-clockwise", "clockwise"])
@pytest.mark.parametrize("start_az", [0.3, -2.9])
def test_empty_cells_get_the_head_s_firing_time_in_either_spin(turn: float, start_az: float):
    """A head turning steadily one way or the other (spinning lidars come in both senses; the embedded world's turn
    one way only): the firing time of an empty cell, inside a gap of returns or past the last return before the
    sweep's seam, is the time the head pointed at it, to float precision. Kills a sign fixed to one sense."""
    from gasp_core.targets.occupancy import cell_firing_offsets

    period_ns = 100_000_000
    t = np.linspace(0.0, 0.95 * period_ns, 400)
    t = t[(t < 0.40 * period_ns) | (t > 0.55 * period_ns)]  # no returns for 15% of the turn: an empty sector

    def azimuth(times):
        return np.mod(start_az + turn * 2 * np.pi * times / period_ns + np.pi, 2 * np.pi) - np.pi

    cells_t = np.array([0.42, 0.47, 0.53, 0.97, 0.99]) * period_ns
    got = cell_firing_offsets(azimuth(t), t.astype(np.int64), azimuth(cells_t))
    np.testing.assert_allclose(got, cells_t, rtol=0, atol=0.05 * period_ns / 400)
