"""Ego-path queries against the closed-form footprint of a vehicle in straight or circular motion."""

from __future__ import annotations

import numpy as np
import pytest

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.targets.ego_path import EgoPathConfig, EgoSource, ego_queries
from tests.targets.conftest import EGO, AnalyticLog

SCENE = SceneConfig(horizon_s=3.0)
CFG = EgoPathConfig(positives_per_sample=3000, near_per_sample=3000, far_per_sample=1000)


def analytic_inside(xy, t, log, t0_s):
    """Footprint test from the closed-form pose: rotate the query into the ego frame at t0 + t."""
    poses = log.city_T_ego((t0_s + t) * 1e9)
    t0 = log.city_T_ego(np.array([t0_s * 1e9]))[0]
    city = xy @ t0[:2, :2].T + t0[:2, 3]
    d = city - poses[:, :2, 3]
    yaw = np.arctan2(poses[:, 1, 0], poses[:, 0, 0])
    lx = np.cos(yaw) * d[:, 0] + np.sin(yaw) * d[:, 1]
    ly = -np.sin(yaw) * d[:, 0] + np.cos(yaw) * d[:, 1]
    return (lx >= -EGO.rear_overhang_m) & (lx <= EGO.length_m - EGO.rear_overhang_m) & (np.abs(ly) <= EGO.width_m / 2)


@pytest.mark.parametrize("yaw_rate", [0.0, 0.3])
def test_labels_match_the_closed_form_footprint(yaw_rate):
    log = AnalyticLog(speed_mps=10.0, yaw_rate=yaw_rate)
    t0_s = 1.0
    sample = Sample(int(t0_s * 1e9), 10, [], [])
    e = ego_queries(log, sample, SCENE, CFG, np.random.default_rng(0))
    expected = analytic_inside(e.xy.astype(np.float64), e.t_s, log, t0_s)
    assert (e.inside.astype(bool) == expected).all()
    assert e.inside[e.source == EgoSource.POSITIVE].all()
    near = e.source == EgoSource.NEAR
    assert 0.01 < e.inside[near].mean() < 0.6  # near queries mix both labels
    if yaw_rate == 0.0:
        # straight line: the footprint at t spans x in [v t - overhang, v t + length - overhang]
        x, t = e.xy[:, 0], e.t_s
        inside = (x >= 10 * t - 1.0) & (x <= 10 * t + 3.0) & (np.abs(e.xy[:, 1]) <= 1.0)
        assert (e.inside.astype(bool) == inside).all()
        # hard negatives: on the path at another time
        on_path = (np.abs(e.xy[:, 1]) <= 1.0) & (x >= -1.0) & (x <= 33.0)
        assert (on_path & (e.inside == 0) & near).sum() > 100
    assert (e.t_s >= 0).all() and (e.t_s <= SCENE.horizon_s).all()


@pytest.mark.parametrize("yaw_rate", [0.0, 0.3])
def test_near_queries_fill_the_margin_around_the_swept_footprint(yaw_rate):
    """Near negatives are drawn within ``near_margin_m`` of the footprint at some future time: every one lies in the
    swept footprint grown by the margin (shapely, closed-form poses), and together they reach the margin's edge on
    every side of the footprint, not just inside it."""
    from shapely import contains_xy
    from shapely.affinity import rotate, translate
    from shapely.geometry import box
    from shapely.ops import unary_union

    log = AnalyticLog(speed_mps=10.0, yaw_rate=yaw_rate)
    t0_s, m = 1.0, CFG.near_margin_m
    e = ego_queries(log, Sample(int(t0_s * 1e9), 10, [], []), SCENE, CFG, np.random.default_rng(1))
    t0_inv = np.linalg.inv(log.city_T_ego(np.array([t0_s * 1e9]))[0])
    grown = box(
        -EGO.rear_overhang_m - m, -EGO.width_m / 2 - m, EGO.length_m - EGO.rear_overhang_m + m, EGO.width_m / 2 + m
    )
    swept = []
    for t in np.linspace(0.0, SCENE.horizon_s, 301):
        pose = t0_inv @ log.city_T_ego(np.array([(t0_s + t) * 1e9]))[0]
        yaw = np.arctan2(pose[1, 0], pose[0, 0])
        swept.append(translate(rotate(grown, yaw, origin=(0, 0), use_radians=True), pose[0, 3], pose[1, 3]))
    region = unary_union(swept).buffer(0.05)  # the 301 time steps are 0.1 m apart at 10 m/s
    near = e.xy[e.source == EgoSource.NEAR].astype(np.float64)
    assert contains_xy(region, near[:, 0], near[:, 1]).all()
    # in each query's own footprint frame at the nearest path time the spread covers the margin on all four sides
    lateral = np.abs(near[:, 1]) if yaw_rate == 0.0 else None
    if lateral is not None:
        assert lateral.max() > EGO.width_m / 2 + 0.8 * m and (near[:, 1] > EGO.width_m / 2 + 0.8 * m).any()
        assert (near[:, 1] < -EGO.width_m / 2 - 0.8 * m).any()
        assert near[:, 0].min() < -EGO.rear_overhang_m - 0.5 * m  # behind the footprint at t = 0
        assert near[:, 0].max() > 10 * SCENE.horizon_s + EGO.length_m - EGO.rear_overhang_m + 0.5 * m


def test_far_queries_cover_the_whole_extent():
    """Far negatives are uniform over the scene's x-y extent: they reach every edge and stay inside."""
    scene = SceneConfig(extent_m=(-30.0, 50.0, -20.0, 40.0, -3.0, 5.0), horizon_s=3.0)
    e = ego_queries(AnalyticLog(), Sample(int(1e9), 10, [], []), scene, CFG, np.random.default_rng(2))
    far = e.xy[e.source == EgoSource.FAR]
    lo, hi = np.array([-30.0, -20.0]), np.array([50.0, 40.0])
    assert (far >= lo).all() and (far <= hi).all()
    np.testing.assert_allclose(far.min(0), lo, atol=1.0)
    np.testing.assert_allclose(far.max(0), hi, atol=1.0)


def test_footprint_edges_count_as_inside():
    """Closed footprint: points exactly on the bumpers and the sides are inside, a hair beyond them outside, for a
    posed ego (yaw 90 degrees, away from the origin) as for one at the origin."""
    from gasp_core.data.schema import EgoDims
    from gasp_core.targets.ego_path import inside_footprint

    ego = EgoDims(length_m=4.0, width_m=2.0, height_m=1.5, rear_overhang_m=1.0)
    local = np.array([[-1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 1.0], [3.0, -1.0]])  # edges and corners
    beyond = local + np.sign(local) * [1e-6, 1e-6] * (np.abs(local) >= [1.0, 1.0])
    for yaw, origin in ((0.0, np.zeros(2)), (np.pi / 2, np.array([5.0, -2.0]))):
        c, s = np.cos(yaw), np.sin(yaw)
        pose = np.eye(4)
        pose[:2, :2], pose[:2, 3] = [[c, -s], [s, c]], origin
        poses = np.repeat(pose[None], len(local), axis=0)
        to_t0 = lambda p: p @ pose[:2, :2].T + origin  # noqa: E731
        # exact edges in the rotated frame: rotation by 90 degrees is exact up to rounding of cos(pi/2); allow 1e-12
        got = inside_footprint(to_t0(local * (1 - 1e-12 * (yaw != 0))), poses, ego)
        assert got.all(), (yaw, got)
        assert not inside_footprint(to_t0(beyond), poses, ego).any(), yaw
