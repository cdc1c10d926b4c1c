"""Occupancy targets against independent references: hand-built rays and closed-form spinning-lidar scans.

Every expected value here is computed by hand from the scene's definition (ray geometry, the closed-form
poses of :class:`AnalyticLog`, each cell's firing time), never by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import StoredSweep
from gasp_core.geometry import from_spherical, make_se3, spherical
from gasp_core.targets.occupancy import (
    OccupancyConfig,
    QuerySource,
    Rays,
    occupancy_queries,
    prepare_sweep,
    sample_rays,
)
from tests.targets.conftest import DT_NS, AnalyticLog

N_AZ = 400  # azimuth bins per turn: one bin fired every 250 us, exactly
STEP_NS = DT_NS // N_AZ
START_BIN = N_AZ // 2  # the head starts the sweep at azimuth 0+ and turns through +-180 deg at mid-sweep
ELEVATIONS_DEG = (-10.0, 0.0, 5.0)  # -10 deg is below missing_min_elevation_deg: never a missing ray
RADIUS_M = 20.0
REAR_MOUNT = (-1.0, 0.0, 2.5)
REAR_ROT = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])  # facing backwards
AZ = -np.pi + (np.arange(N_AZ) + 0.5) * 2 * np.pi / N_AZ  # bin centres, as fired

GAP_SEAM = frozenset(range(395, 400)) | frozenset(range(0, 5))  # straddles +-180 deg, mid-sweep
GAP_FIRST = frozenset(range(205, 215))  # fired 1.25 .. 3.5 ms into the sweep
GAP_LAST = frozenset(range(185, 195))  # fired 96.25 .. 98.5 ms into the sweep
GAP_REAR = frozenset(range(100, 110))  # rear lidar, sensor azimuth -90 deg (ego +90 deg)
GAP_START = frozenset(range(194, 206))  # across the sweep's start: fired last (97 .. 100 ms) and first (0 .. 1.5 ms)
T0_K, SWEEP_KS = 2, (2, 3, 10, 33)  # t0 and the sweeps used (the last one 3.1 s after t0)
SCENE = SceneConfig(extent_m=(-60.0, 60.0, -60.0, 60.0, -5.0, 10.0), past_sweeps=1, horizon_s=3.1)


@dataclass
class TwoLidarLog(AnalyticLog):
    """:class:`AnalyticLog` with a second, backward-facing lidar at the rear."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.meta.lidars = ["lidar", "rear"]

    def ego_T_sensor(self, name: str) -> np.ndarray:
        if name == "rear":
            return make_se3(REAR_ROT, np.array(REAR_MOUNT))
        return super().ego_T_sensor(name)


def fire(
    log: AnalyticLog,
    ts: int,
    lidar: np.ndarray,
    laser: np.ndarray,
    az: np.ndarray,
    el: np.ndarray,
    off: np.ndarray,
    radius: float = RADIUS_M,
) -> StoredSweep:
    """Ray i leaves ``lidar[i]`` at ts + off[i] along sensor (az, el) and returns at ``radius`` (a dome)."""
    pts = np.zeros((len(az), 3))
    for li, name in enumerate(log.meta.lidars):
        m = lidar == li
        city_T_sensor = log.city_T_ego(ts + off[m]) @ log.ego_T_sensor(name)
        d = np.einsum("nij,nj->ni", city_T_sensor[:, :3, :3], from_spherical(az[m], el[m]))
        pts[m] = city_T_sensor[:, :3, 3] + radius * d
    ego_T_city = np.linalg.inv(log.city_T_ego(ts)[0])
    pts = pts @ ego_T_city[:3, :3].T + ego_T_city[:3, 3]
    n = len(az)
    return StoredSweep(
        ts, pts, np.ones(n, np.float32), laser.astype(np.int16), lidar.astype(np.uint8), off.astype(np.int32)
    )


def dome_sweep(log: AnalyticLog, ts: int, gaps: dict[int, frozenset]) -> StoredSweep:
    """Every lidar spins over N_AZ bins x ELEVATIONS_DEG; bins in ``gaps[lidar]`` return nothing."""
    cols = {"lidar": [], "laser": [], "az": [], "el": [], "off": []}
    bins = np.arange(N_AZ)
    for li in range(len(log.meta.lidars)):
        keep = bins[~np.isin(bins, sorted(gaps.get(li, ())))]
        for k, el in enumerate(np.deg2rad(ELEVATIONS_DEG)):
            for key, v in (("lidar", li), ("laser", k), ("el", el)):
                cols[key].append(np.full(len(keep), v))
            cols["az"].append(AZ[keep])
            cols["off"].append(((keep - START_BIN) % N_AZ) * STEP_NS)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    return fire(log, ts, c["lidar"], c["laser"], c["az"], c["el"], c["off"].astype(np.int64))


def dome_log(speed_mps: float, gaps: dict[int, frozenset]) -> TwoLidarLog:
    log = TwoLidarLog(speed_mps=speed_mps)
    for k in SWEEP_KS:
        log.sweeps[k * DT_NS] = dome_sweep(log, k * DT_NS, gaps)
    return log


def dome_sample() -> Sample:
    return Sample(T0_K * DT_NS, T0_K, [T0_K * DT_NS], [k * DT_NS for k in SWEEP_KS[1:]])


def lidar_in_t0(log: AnalyticLog, name: str, t_ns: np.ndarray, t0_ns: int) -> np.ndarray:
    """Closed-form position of a lidar at absolute times ``t_ns``, in the ego frame at t0."""
    t0_T_ego = np.linalg.inv(log.city_T_ego(t0_ns)[0]) @ log.city_T_ego(np.asarray(t_ns))
    return (t0_T_ego @ log.ego_T_sensor(name))[:, :3, 3]


def expected_cells(gaps: dict[int, frozenset]) -> list[tuple[int, int, float]]:
    """(lidar, bin, elevation) of every cell that must give a missing ray in one sweep.

    A gap bin counts only when both azimuth neighbours are empty too (one bin of dilation); lasers below
    -1 deg never give missing rays.
    """
    out = []
    for li, gap in gaps.items():
        for j in sorted(gap):
            if (j - 1) % N_AZ in gap and (j + 1) % N_AZ in gap:
                out += [(li, j, np.deg2rad(e)) for e in ELEVATIONS_DEG if e >= -1.0]
    return out


def cell_dir_ego(li: int, j: int, el: float) -> np.ndarray:
    d = from_spherical(np.array([AZ[j]]), np.array([el]))[0]
    return REAR_ROT @ d if li == 1 else d


def match_missing(missing: Rays, gaps: dict[int, frozenset]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sweep k, lidar, expected firing time after t0 in ns) of each missing ray, matched to its cell by direction.

    Asserts that each expected cell of each sweep gives exactly one missing ray.
    """
    cells = expected_cells(gaps)
    dirs = np.stack([cell_dir_ego(*c) for c in cells])
    cos = missing.dirs @ dirs.T
    which = np.argmax(cos, axis=1)
    assert (cos[np.arange(len(which)), which] > np.cos(np.deg2rad(0.05))).all()
    k = np.floor(missing.t_s * 1e9 / DT_NS + T0_K).astype(int)  # firing offsets are < one sweep period
    for kk in SWEEP_KS:
        assert sorted(which[k == kk]) == list(range(len(cells)))
    lidar = np.array([cells[w][0] for w in which])
    off = np.array([((cells[w][1] - START_BIN) % N_AZ) * STEP_NS for w in which])
    return k, lidar, (k - T0_K) * DT_NS + off


def test_query_source_codes_are_stable():
    """The stored ``source`` column uses these codes (the target build counts missing-ray queries as 2)."""
    assert (int(QuerySource.RETURN), int(QuerySource.FREE), int(QuerySource.MISSING)) == (0, 1, 2)


@pytest.mark.parametrize(
    "gaps",
    [
        {0: GAP_SEAM | GAP_FIRST | GAP_LAST, 1: GAP_REAR},
        {0: frozenset(), 1: GAP_REAR},  # the first lidar has no empty cell: the second still gives its own
        {0: GAP_START, 1: frozenset()},  # empty cells on both sides of the sweep's seam in firing time
    ],
    ids=["both", "rear-only", "seam"],
)
def test_missing_rays_of_a_static_two_lidar_dome(gaps: dict[int, frozenset]):
    """Missing rays are exactly the empty cells of each lidar: direction, origin and firing time."""
    log = dome_log(0.0, gaps)
    sample = dome_sample()
    cfg = OccupancyConfig(origin_time_bins=16, occupied_per_sample=300, free_per_sample=200, missing_per_sample=100)
    returned, missing = sample_rays(log, sample, cfg)
    n_cells = len(expected_cells(gaps))
    assert len(missing.t_s) == len(SWEEP_KS) * n_cells
    assert missing.endpoints.shape == (len(missing.t_s), 3) and np.isnan(missing.endpoints).all()
    np.testing.assert_allclose(missing.range_m, cfg.missing_range_m)
    _, lidar, t_ns = match_missing(missing, gaps)
    # the firing time of an empty cell is that of the head at its azimuth (to the nanosecond)
    np.testing.assert_allclose(missing.t_s, t_ns / 1e9, rtol=0, atol=1.2e-9)
    mounts = np.array([[1.0, 0.0, 2.0], REAR_MOUNT])
    np.testing.assert_allclose(missing.origins, mounts[lidar], atol=1e-12)

    q = occupancy_queries(returned, missing, SCENE, cfg, np.random.default_rng(3))
    src = q.source
    assert [(src == s).sum() for s in QuerySource] == [300, 200, 100]
    assert (q.occupied == (src == QuerySource.RETURN)).all()
    m = src == QuerySource.MISSING
    ray = q.ray[m] - len(returned.t_s)
    v = q.xyz[m] - mounts[lidar[ray]]
    dist = np.linalg.norm(v, axis=1)
    assert (dist <= cfg.missing_range_m + 1e-9).all()
    np.testing.assert_allclose(v, dist[:, None] * missing.dirs[ray], atol=1e-9)  # on its own ray
    np.testing.assert_allclose(q.t_s[m], t_ns[ray] / 1e9, rtol=0, atol=1.2e-9)


def test_queries_on_a_static_dome():
    """Occupied queries lie in [R, R + delta_occ] and free ones before R - delta_free, on rays that returned."""
    gaps = {0: GAP_SEAM | GAP_FIRST | GAP_LAST, 1: GAP_REAR}
    log = dome_log(0.0, gaps)
    cfg = OccupancyConfig(origin_time_bins=16, occupied_per_sample=500, free_per_sample=500, missing_per_sample=0)
    returned, missing = sample_rays(log, dome_sample(), cfg)
    assert missing is None
    n_per_sweep = sum(len(ELEVATIONS_DEG) * (N_AZ - len(g)) for g in gaps.values())
    assert len(returned.t_s) == len(SWEEP_KS) * n_per_sweep
    q = occupancy_queries(returned, missing, SCENE, cfg, np.random.default_rng(4))
    mounts = np.array([[1.0, 0.0, 2.0], REAR_MOUNT])
    for src, lo, hi in (
        (QuerySource.RETURN, RADIUS_M, RADIUS_M + cfg.delta_occ_m),
        (QuerySource.FREE, 0.0, RADIUS_M - cfg.delta_free_m),
    ):
        m = q.source == src
        assert m.sum() == 500
        # the ray's lidar is the one whose mount is RADIUS_M from the endpoint
        end = returned.endpoints[q.ray[m]]
        li = np.argmin(np.abs(np.linalg.norm(end[:, None] - mounts[None], axis=2) - RADIUS_M), axis=1)
        v = q.xyz[m] - mounts[li]
        dist = np.linalg.norm(v, axis=1)
        assert (dist >= lo - 1e-9).all() and (dist <= hi + 1e-9).all()
        np.testing.assert_allclose(v / dist[:, None], (end - mounts[li]) / RADIUS_M, atol=1e-9)
        # directions of returned cells only: sensor azimuth outside the lidar's gap
        d_sensor = np.where(li[:, None] == 1, v @ REAR_ROT, v)
        az, _ = spherical(d_sensor)
        j = np.floor((az + np.pi) / (2 * np.pi) * N_AZ).astype(int) % N_AZ
        assert not any(jj in gaps[ll] for jj, ll in zip(j, li))


def test_origins_and_times_while_moving():
    """Ego at 10 m/s, 16 origin bins: every origin is the lidar within half a bin of its firing time.

    Returned rays' times are the sweep's time + the point's offset (exactly); missing rays' times are their
    cell's firing time, and their origins the lidar at that time, within the same half bin.
    """
    gaps = {0: GAP_SEAM | GAP_FIRST | GAP_LAST, 1: GAP_REAR}
    log = dome_log(10.0, gaps)
    sample = dome_sample()
    cfg = OccupancyConfig(origin_time_bins=16, missing_per_sample=100)
    returned, missing = sample_rays(log, sample, cfg)
    half_bin_m = 10.0 * DT_NS / 16 / 2 / 1e9
    sweeps = [log.sweeps[k * DT_NS] for k in SWEEP_KS]
    off = np.concatenate([sw.offset_ns.astype(np.int64) + (k - T0_K) * DT_NS for k, sw in zip(SWEEP_KS, sweeps)])
    lidar = np.concatenate([sw.lidar for sw in sweeps])
    np.testing.assert_allclose(returned.t_s, off / 1e9, rtol=0, atol=1e-15)
    for li, name in enumerate(log.meta.lidars):
        m = lidar == li
        err = np.linalg.norm(returned.origins[m] - lidar_in_t0(log, name, off[m] + sample.t0_ns, sample.t0_ns), axis=1)
        assert err.max() <= half_bin_m + 1e-9
    _, mlidar, t_ns = match_missing(missing, gaps)
    # empty cells take the firing time interpolated from the returns' azimuths (measured from binned origins)
    np.testing.assert_allclose(missing.t_s, t_ns / 1e9, rtol=0, atol=30e-6)
    for li, name in enumerate(log.meta.lidars):
        m = mlidar == li
        err = np.linalg.norm(missing.origins[m] - lidar_in_t0(log, name, t_ns[m] + sample.t0_ns, sample.t0_ns), axis=1)
        assert err.max() <= half_bin_m + 10.0 * 30e-6


@pytest.mark.parametrize("kind", ["one-bin-per-ns", "single-instant"])
def test_origins_at_the_exact_firing_time(kind: str):
    """With a bin per nanosecond of the sweep (or one firing instant), origins are exact at the firing time."""
    log = AnalyticLog(speed_mps=100.0)
    n_az = 12
    if kind == "one-bin-per-ns":
        off = np.repeat(np.arange(8), n_az)
        bins = 8
    else:
        off = np.full(8 * n_az, 40_000_000)
        bins = 16
    az = np.tile(-np.pi + (np.arange(n_az) + 0.5) * 2 * np.pi / n_az, 8)
    zeros = np.zeros(len(az), np.int64)
    for k in (2, 3, 10):
        log.sweeps[k * DT_NS] = fire(log, k * DT_NS, zeros, zeros, az, np.zeros(len(az)), off)
    sample = Sample(2 * DT_NS, 2, [2 * DT_NS], [3 * DT_NS, 10 * DT_NS])
    cfg = OccupancyConfig(origin_time_bins=bins, missing_per_sample=0)
    returned, _ = sample_rays(log, sample, cfg)
    t_ns = np.concatenate([off + (k - 2) * DT_NS for k in (2, 3, 10)])
    np.testing.assert_allclose(returned.t_s, t_ns / 1e9, rtol=0, atol=1e-15)
    x = 100.0 * t_ns / 1e9 + 1.0  # lidar x at its firing time, t0 frame (1 ns = 1e-7 m)
    np.testing.assert_allclose(returned.origins, np.stack([x, 0 * x, 0 * x + 2.0], 1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(returned.range_m, RADIUS_M, atol=1e-10)


def test_degenerate_returns_are_dropped_close_ones_kept():
    """A return at the sensor itself (range 0) gives no ray; one 0.5 m away is a ray like any other."""
    log = AnalyticLog(speed_mps=0.0)
    mount = np.array(log.mount_m)
    pts = np.array([mount, mount + [0.5, 0.0, 0.0], mount + [10.0, 0.0, 0.0], mount + [0.0, 10.0, 0.0]])
    n = len(pts)
    for k in (0, 1):
        log.sweeps[k * DT_NS] = StoredSweep(
            k * DT_NS,
            pts,
            np.ones(n, np.float32),
            np.zeros(n, np.int16),
            np.zeros(n, np.uint8),
            np.array([0, 10, 20, 30], np.int32),
        )
    returned, _ = sample_rays(log, Sample(0, 0, [0], [DT_NS]), OccupancyConfig(missing_per_sample=0))
    np.testing.assert_allclose(returned.range_m, [0.5, 10.0, 10.0] * 2, atol=1e-12)
    np.testing.assert_allclose(returned.dirs, [[1, 0, 0], [1, 0, 0], [0, 1, 0]] * 2, atol=1e-12)
    np.testing.assert_allclose(returned.t_s * 1e9, [10, 20, 30, DT_NS + 10, DT_NS + 20, DT_NS + 30], atol=1e-6)


@pytest.mark.parametrize("n_missing", [1, -1, 0])
def test_missing_ray_count_switch(n_missing: int):
    """One missing query when one is asked for; none, and no missing rays at all, when the count is <= 0."""
    gaps = {0: GAP_SEAM, 1: frozenset()}
    log = dome_log(0.0, gaps)
    cfg = OccupancyConfig(origin_time_bins=16, occupied_per_sample=5, free_per_sample=5, missing_per_sample=n_missing)
    returned, missing = sample_rays(log, dome_sample(), cfg)
    if n_missing <= 0:
        assert missing is None
        sr = prepare_sweep(log, T0_K * DT_NS, cfg)
        assert sr.missing_origins.shape == (0, 3) and sr.missing_dirs.shape == (0, 3)
        assert sr.missing_offset_ns.shape == (0,)
    q = occupancy_queries(returned, missing, SCENE, cfg, np.random.default_rng(5))
    assert [(q.source == s).sum() for s in QuerySource] == [5, 5, max(n_missing, 0)]


def test_full_coverage_gives_no_missing_rays():
    """A lidar whose every cell returned gives no missing rays; queries still come with missing supervision on."""
    log = dome_log(0.0, {})
    cfg = OccupancyConfig(origin_time_bins=16, occupied_per_sample=7, free_per_sample=7, missing_per_sample=50)
    returned, missing = sample_rays(log, dome_sample(), cfg)
    assert missing is None
    q = occupancy_queries(returned, missing, SCENE, cfg, np.random.default_rng(6))
    assert [(q.source == s).sum() for s in QuerySource] == [7, 7, 0]


class CountingLog(AnalyticLog):
    """Counts sweep loads."""

    loads: int = 0

    def sweep(self, ts: int) -> StoredSweep:
        self.loads += 1
        return super().sweep(ts)


def test_cache_prepares_each_sweep_once_and_drops_old_ones():
    """Over samples in time order, each sweep is loaded once; the cache holds exactly the current sample's sweeps."""
    log = CountingLog(speed_mps=0.0)
    n = 12
    az = -np.pi + (np.arange(8) + 0.5) * 2 * np.pi / 8
    zeros = np.zeros(8, np.int64)
    for k in range(n):
        log.sweeps[k * DT_NS] = fire(log, k * DT_NS, zeros, zeros, az, np.zeros(8), np.arange(8) * 1000)
    cfg = OccupancyConfig(missing_per_sample=0)
    cache: dict = {}
    prev = {}
    for i in range(0, n - 3, 2):
        times = [k * DT_NS for k in range(i, i + 4)]
        sample_rays(log, Sample(times[0], i, [times[0]], times[1:]), cfg, cache)
        assert sorted(cache) == times
        for ts in set(prev) & set(cache):
            assert cache[ts] is prev[ts]
        prev = dict(cache)
    assert log.loads == n


BOX = SceneConfig(extent_m=(-10.0, 10.0, -10.0, 10.0, -2.0, 4.0))


def rays_to(origins: np.ndarray, endpoints: np.ndarray) -> Rays:
    """Returned rays from ``origins`` to ``endpoints``, each ray's time its index (in s)."""
    origins = np.broadcast_to(np.asarray(origins, np.float64), np.shape(endpoints)).copy()
    endpoints = np.asarray(endpoints, np.float64)
    vec = endpoints - origins
    rng_m = np.linalg.norm(vec, axis=1)
    return Rays(origins, endpoints, vec / rng_m[:, None], rng_m, np.arange(len(rng_m), dtype=np.float64))


def along(q_xyz: np.ndarray, rays: Rays, idx: np.ndarray) -> np.ndarray:
    """Distance of each query along its ray, after checking that it lies on the ray's line."""
    v = q_xyz - rays.origins[idx]
    s = np.einsum("ij,ij->i", v, rays.dirs[idx])
    np.testing.assert_allclose(v, s[:, None] * rays.dirs[idx], atol=1e-9)
    return s


def queries(rays: Rays, n_occ: int, n_free: int, seed: int = 0, scene: SceneConfig = BOX):
    cfg = OccupancyConfig(occupied_per_sample=n_occ, free_per_sample=n_free, missing_per_sample=3000)
    return occupancy_queries(rays, None, scene, cfg, np.random.default_rng(seed)), cfg


INSIDE = [(5, 0, 0), (-3, 2, 1), (10, 0, 0), (0, 0, -2), (0, -10, 3), (2, 2, 4)]  # the last four on faces
OUTSIDE = [(12, 0, 0), (0, 0, -3), (0, -11, 0), (0, 0, 5), (-10.5, 0, 0), (3, 10.01, 0)]


def test_occupied_candidates_are_the_returns_in_the_closed_extent():
    """With as many occupied queries as returns inside the (closed) extent, each of those is used once."""
    rays = rays_to([0.0, 0.0, 0.5], np.array(OUTSIDE[:3] + INSIDE + OUTSIDE[3:], np.float64))
    q, cfg = queries(rays, len(INSIDE), 0)
    occ = q.source == QuerySource.RETURN
    assert sorted(q.ray[occ]) == list(range(3, 3 + len(INSIDE)))
    s = along(q.xyz[occ], rays, q.ray[occ])
    r = rays.range_m[q.ray[occ]]
    assert (s >= r - 1e-9).all() and (s <= r + cfg.delta_occ_m + 1e-9).all()
    np.testing.assert_array_equal(q.t_s[occ], q.ray[occ])
    assert not (q.source != QuerySource.RETURN).any()


@pytest.mark.parametrize(("n_occ", "n_free"), [(0, 0), (1, 1), (7, 3), (10, 10)])
def test_counts_and_distinct_rays(n_occ: int, n_free: int):
    """Exactly the configured counts; with at least that many candidates, no ray is used twice."""
    az = np.arange(10) * 2 * np.pi / 10
    rays = rays_to([0.0, 0.0, 0.0], np.stack([5 * np.cos(az), 5 * np.sin(az), np.zeros(10)], 1))
    for seed in range(3):
        q, _ = queries(rays, n_occ, n_free, seed)
        for src, n in ((QuerySource.RETURN, n_occ), (QuerySource.FREE, n_free)):
            m = q.source == src
            assert m.sum() == n and len(set(q.ray[m])) == n
        assert not (q.source == QuerySource.MISSING).any()


def test_no_or_one_occupied_candidate():
    """No return inside the extent: no occupied query; one return inside: every occupied query is on it."""
    rays = rays_to([0.0, 0.0, 0.0], np.array(OUTSIDE, np.float64))
    q, cfg = queries(rays, 5, 20)
    assert not (q.source == QuerySource.RETURN).any()
    free = q.source == QuerySource.FREE
    assert free.sum() == 20  # the rays' free stretch inside the extent still counts
    assert np.all((q.xyz[free] >= BOX.box_min - 1e-9) & (q.xyz[free] <= BOX.box_max + 1e-9))
    s = along(q.xyz[free], rays, q.ray[free])
    assert (s >= 0).all() and (s <= rays.range_m[q.ray[free]] - cfg.delta_free_m).all()
    rays = rays_to([0.0, 0.0, 0.0], np.array(OUTSIDE + [(4, 4, 1)], np.float64))
    q, _ = queries(rays, 5, 0)
    assert list(q.ray) == [len(OUTSIDE)] * 5


def test_free_queries_use_the_rays_with_free_space():
    """When few rays have free space (most returns closer than delta_free), the n free queries use n of those."""
    gen = np.random.default_rng(7)
    az = gen.uniform(-np.pi, np.pi, 1000)
    rng_m = np.where(np.arange(1000) % 10 == 0, 8.0, 0.05)  # 100 rays with free space, 900 without
    origin = np.array([0.0, 0.0, 1.0])
    rays = rays_to(origin, origin + rng_m[:, None] * np.stack([np.cos(az), np.sin(az), 0 * az], 1))
    for seed in range(3):
        q, cfg = queries(rays, 0, 50, seed)
        free = q.source == QuerySource.FREE
        assert free.sum() == 50 and len(set(q.ray[free])) == 50
        assert (rng_m[q.ray[free]] == 8.0).all()
        s = along(q.xyz[free], rays, q.ray[free])
        assert (s >= 0).all() and (s <= 8.0 - cfg.delta_free_m).all()


def test_free_queries_are_spread_over_the_whole_free_stretch():
    """Free queries are uniform along [0, range - delta_free], on distinct rays when enough rays have free space."""
    gen = np.random.default_rng(8)
    az = gen.uniform(-np.pi, np.pi, 200)
    rng_m = gen.uniform(3.0, 9.0, 200)
    rays = rays_to(np.zeros(3), rng_m[:, None] * np.stack([np.cos(az), np.sin(az), 0 * az], 1))
    q, cfg = queries(rays, 0, 4000)
    free = q.source == QuerySource.FREE
    frac = along(q.xyz[free], rays, q.ray[free]) / (rng_m[q.ray[free]] - cfg.delta_free_m)
    assert (frac >= 0).all() and (frac <= 1 + 1e-12).all()
    assert 0.45 < (frac > 0.5).mean() < 0.55 and frac.max() > 0.99
    np.testing.assert_array_equal(q.t_s[free], q.ray[free])
    for seed in range(3):
        q, _ = queries(rays, 0, 60, seed)
        assert len(set(q.ray)) == 60
