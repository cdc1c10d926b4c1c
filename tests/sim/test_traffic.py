"""Traffic behaves like traffic: no collisions, vehicles on lanes, plausible ego dynamics."""

import numpy as np
import pytest
import shapely

from gasp_core.sim.config import world_config_from_dict
from gasp_core.sim.semantics import Surface
from gasp_core.sim.town import Town
from gasp_core.sim.traffic import simulate_traffic


@pytest.fixture(scope="module")
def traffic():
    cfg = world_config_from_dict({"seconds": 12.0, "traffic": {"warmup_s": 8.0}})
    town = Town(cfg.town, seed=21)
    ego, tracks = simulate_traffic(town, cfg, np.random.default_rng(21))
    return cfg, town, ego, tracks


def _footprints(tracks, k):
    out = []
    for tr in tracks:
        c, s = np.cos(tr.yaw_rad[k]), np.sin(tr.yaw_rad[k])
        half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [tr.length_m / 2, tr.width_m / 2]
        out.append(shapely.Polygon(tr.xy[k] + half @ np.array([[c, s], [-s, c]])))
    return out


def test_vehicles_never_overlap(traffic):
    _, _, ego, tracks = traffic
    vehicles = [ego] + [t for t in tracks if t.kind in ("car", "truck", "bus", "cyclist", "parked")]
    for k in range(0, len(ego.times_s), 2):
        polys = _footprints(vehicles, k)
        tree = shapely.STRtree(polys)
        a, b = tree.query(polys, predicate="intersects")
        pairs = [(i, j) for i, j in zip(a, b) if i < j and polys[i].intersection(polys[j]).area > 0.05]
        assert not pairs, f"t={ego.times_s[k]:.1f}s: overlapping vehicles {pairs}"


def test_moving_vehicles_stay_on_lanes(traffic):
    _, town, ego, tracks = traffic
    centers = np.concatenate([l.centerline for l in town.lanes.values()])
    for tr in [ego] + [t for t in tracks if t.kind in ("car", "truck", "bus")]:
        d = np.min(np.linalg.norm(tr.xy[:, None, :] - centers[None], axis=2), axis=1)
        assert d.max() < 0.6, f"{tr.kind} {tr.track_id} leaves its lane by {d.max():.2f} m"


def test_ego_dynamics_are_realistic(traffic):
    cfg, _, ego, _ = traffic
    dt = cfg.traffic.dt_s
    speed = np.linalg.norm(np.diff(ego.xy, axis=0), axis=1) / dt
    accel = np.diff(speed) / dt
    assert speed.max() <= cfg.traffic.ego_speed_mps + 0.5
    assert accel.max() <= cfg.traffic.max_accel_mps2 + 0.3
    assert accel.min() >= -7.5


def test_pedestrians_walk_on_sidewalks_and_crosswalks(traffic):
    _, town, _, tracks = traffic
    peds = [t for t in tracks if t.kind == "pedestrian"]
    assert peds
    xy = np.concatenate([p.xy for p in peds])
    material = town.material_at(xy)
    crossings = shapely.union_all([shapely.Polygon(c.polygon) for c in town.crosswalks])
    on_crossing = shapely.contains_xy(crossings, xy[:, 0], xy[:, 1])  # zebra gaps are road paint-free
    allowed = on_crossing | np.isin(material, [Surface.SIDEWALK, Surface.GRASS, Surface.PARKING])
    assert allowed.mean() > 0.99, f"{1 - allowed.mean():.1%} of pedestrian positions are on the open road"
    assert on_crossing.any(), "no pedestrian crossed"
