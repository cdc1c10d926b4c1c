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
