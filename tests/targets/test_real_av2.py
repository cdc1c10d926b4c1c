"""The real AV2 log: its second sweep as the future of its first, every label checked against the returns."""

from __future__ import annotations

import numpy as np
import pytest

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.data.store import LogStore
from gasp_core.geometry import spherical
from gasp_core.targets.occupancy import OccupancyConfig, QuerySource, occupancy_queries, sample_rays

SCENE = SceneConfig(extent_m=(-50.0, 50.0, -50.0, 50.0, -4.0, 6.0), past_sweeps=1, horizon_s=0.1)
CFG = OccupancyConfig(include_present=False, occupied_per_sample=20000, free_per_sample=20000, missing_per_sample=5000)


@pytest.fixture(scope="module")
def real_log(av2_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_store")
    ingest(IngestConfig(format="av2", root=str(av2_sample.parent), split=av2_sample.name), out, progress=False)
    store = LogStore(out)
    return store.log(store.log_ids[0])


def test_every_query_sits_on_a_real_return_ray(real_log):
    samples = select_samples(real_log.sweep_timestamps_ns, SCENE, stride=1)
    assert len(samples) == 1 and len(samples[0].future_ns) == 1
    sample = samples[0]
    returned, missing = sample_rays(real_log, sample, CFG)
    # independent reconstruction of the returns of the second sweep in the first sweep's ego frame
    ts = sample.future_ns[0]
    sw = real_log.sweep(ts)
    t0_T_ts = np.linalg.inv(real_log.city_T_ego(sample.t0_ns)[0]) @ real_log.city_T_ego(ts)[0]
    expected = sw.points_ego.astype(np.float64) @ t0_T_ts[:3, :3].T + t0_T_ts[:3, 3]
    assert len(returned.endpoints) == len(expected)
    np.testing.assert_allclose(returned.endpoints, expected, atol=1e-9)
    # origins: the firing lidar (up: lasers 0-31, down: 32-63) posed at the firing time (16 bins per sweep)
    lidar_xyz = real_log.lidar_origins_ego()[sw.lidar]
    fire = real_log.city_T_ego(np.minimum(ts + sw.offset_ns.astype(np.int64), real_log.pose_range_ns()[1]))
    t0_T_fire = np.linalg.inv(real_log.city_T_ego(sample.t0_ns)[0]) @ fire
    exact_origin = np.einsum("nij,nj->ni", t0_T_fire[:, :3, :3], lidar_xyz) + t0_T_fire[:, :3, 3]
    assert np.abs(returned.origins - exact_origin).max() < 0.05

    q = occupancy_queries(returned, missing, SCENE, CFG, np.random.default_rng(0))
    occ, free = q.source == QuerySource.RETURN, q.source == QuerySource.FREE
    assert occ.sum() == 20000 and free.sum() == 20000
    # every occupied query lies within delta_occ behind its return, on the ray
    p, d, o = returned.endpoints[q.ray[occ]], returned.dirs[q.ray[occ]], returned.origins[q.ray[occ]]
    behind = np.einsum("ij,ij->i", q.xyz[occ] - p, d)
    assert (behind >= -1e-9).all() and (behind <= CFG.delta_occ_m + 1e-9).all()
    np.testing.assert_allclose(np.linalg.norm(np.cross(q.xyz[occ] - p, d), axis=1), 0.0, atol=1e-9)
    # every free query lies on its ray, at least delta_free before the return
    p, d, o = returned.endpoints[q.ray[free]], returned.dirs[q.ray[free]], returned.origins[q.ray[free]]
    along = np.einsum("ij,ij->i", q.xyz[free] - o, d)
    assert (along >= -1e-9).all()
    assert (along <= np.linalg.norm(p - o, axis=1) - CFG.delta_free_m + 1e-9).all()
    np.testing.assert_allclose(np.linalg.norm(np.cross(q.xyz[free] - o, d), axis=1), 0.0, atol=1e-9)
    # missing rays: inferred from a real 2 x 32-laser scan; none points below the threshold elevation
    assert missing is not None and len(missing.t_s) > 100
    _, el = spherical(missing.dirs)
    assert np.rad2deg(el).min() > CFG.missing_min_elevation_deg - 1.0  # allowance: ego pitch between t0 and the sweep
    m = q.source == QuerySource.MISSING
    assert m.sum() == CFG.missing_per_sample and not q.occupied[m].any()
