"""UnO-style occupancy queries from future lidar rays, with GASP's missing-ray supervision.

For a sample at t0, every return of the future sweeps is a ray from the lidar's origin at its firing
time to the return, both moved into the t0 ego frame. Along a ray, space is free up to the return
(minus ``delta_free_m``) and occupied just behind it (``[range, range + delta_occ_m]``); a direction of
the scan pattern that returned nothing is free up to ``missing_range_m``. Queries are (x, y, z, t) in
the t0 frame with t the firing time after t0, restricted to the scene extent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.geometry import from_spherical, ray_box_interval, spherical
from gasp_core.targets.scan_pattern import empty_cells, infer_pattern


@dataclass
class OccupancyConfig:
    stride: int = 3
    """A sample (t0) every ``stride`` sweeps."""
    include_present: bool = True
    """Use the t0 sweep itself as well as the future ones (t = 0 is part of the horizon)."""
    occupied_per_sample: int = 6000
    """Occupied queries per sample (one per sampled return ray)."""
    free_per_sample: int = 6000
    """Free queries per sample along returned rays."""
    missing_per_sample: int = 3000
    """Free queries per sample along rays that returned nothing (0 disables missing-ray supervision)."""
    delta_occ_m: float = 0.1
    """Occupied band behind each return."""
    delta_free_m: float = 0.1
    """Free space ends this far before each return."""
    missing_range_m: float = 40.0
    """Missing rays are free up to this range."""
    missing_min_elevation_deg: float = -1.0
    """Rays pointing further down (in the ego frame) never give missing rays: their no-return means absorption, not
    free space."""
    azimuth_bins: int | None = None
    """Scan-pattern azimuth bins per revolution; null infers them from each sweep."""
    origin_time_bins: int = 16
    """The sensor origin is posed at this many instants per sweep (ego motion during the sweep)."""


class QuerySource(IntEnum):
    """Where an occupancy query came from (``source`` column)."""

    RETURN = 0  # occupied, just behind a return
    FREE = 1  # free, before a return
    MISSING = 2  # free, along a ray that returned nothing


@dataclass
class Rays:
    """Rays of a set of sweeps in the t0 frame."""

    origins: np.ndarray  # (M, 3)
    endpoints: np.ndarray  # (M, 3); NaN for missing rays
    dirs: np.ndarray  # (M, 3) unit
    range_m: np.ndarray  # (M,)
    t_s: np.ndarray  # (M,) firing time after t0


@dataclass
class OccupancyQueries:
    xyz: np.ndarray  # (Q, 3) t0 ego frame
    t_s: np.ndarray  # (Q,)
    occupied: np.ndarray  # (Q,) uint8
    source: np.ndarray  # (Q,) QuerySource
    ray: np.ndarray  # (Q,) index of the ray in the concatenation [returned rays, missing rays]


@dataclass
class SweepRays:
    """One sweep's rays in its own ego frame (at ``ts_ns``); computed once, reused by every sample."""

    ts_ns: int
    points: np.ndarray  # (N, 3) returns
    origin_index: np.ndarray  # (N,) row of ``origins`` (time bin x lidar) each return was fired from
    origins: np.ndarray  # (K, 3) lidar origins at firing-time bins
    offset_ns: np.ndarray  # (N,)
    missing_origins: np.ndarray  # (Mm, 3)
    missing_dirs: np.ndarray  # (Mm, 3)
    missing_offset_ns: np.ndarray  # (Mm,)


def _poses(log, times_ns: np.ndarray) -> np.ndarray:
    """city_T_ego at each time, clamped to the log's pose range (firing times can pass the last pose)."""
    lo, hi = log.pose_range_ns()
    return log.city_T_ego(np.clip(np.asarray(times_ns, dtype=np.int64), lo, hi))


def cell_firing_offsets(az: np.ndarray, off: np.ndarray, az_c: np.ndarray) -> np.ndarray:
    """Firing-time offsets of empty cells at azimuths ``az_c``, interpolated between the returns (azimuths ``az``,
    offsets ``off``) nearest in firing order: the head turns steadily, in either direction. The phase is the angle
    turned since the sweep's first return, and one turn past the last return comes the next turn's first, so cells of
    a gap across the sweep's start get the end's times on one side and the start's on the other, never their mean."""
    off = off.astype(np.float64)
    if off.max() == off.min():  # one firing time for the whole sweep (nuScenes): nothing to interpolate
        return np.full(len(az_c), off.min())
    start = az[np.argmin(off)]
    sign = 1.0 if np.corrcoef(np.mod(az - start, 2 * np.pi), off)[0, 1] >= 0 else -1.0  # counter-clockwise head: +1
    phase, phase_c = np.mod(sign * (az - start), 2 * np.pi), np.mod(sign * (az_c - start), 2 * np.pi)
    order = np.argsort(phase, kind="stable")
    ph, of = phase[order], off[order]
    span = ph[-1] - ph[0]
    if span <= np.pi:  # too little of the turn to know its period: hold the nearest end's time
        return np.interp(phase_c, ph, of)
    period = (of[-1] - of[0]) * 2 * np.pi / span
    out = np.interp(phase_c, np.r_[ph, ph[0] + 2 * np.pi], np.r_[of, of[0] + period])
    return np.where(out >= period, out - period, out)  # offsets count from the sweep's start: one period wraps to 0


def prepare_sweep(log, ts_ns: int, cfg: OccupancyConfig) -> SweepRays:
    """Origins at firing time and (if enabled) the missing rays of one sweep, in its ego frame."""
    sw = log.sweep(ts_ns)
    off = sw.offset_ns.astype(np.int64)
    lo, hi = int(off.min()), int(off.max())
    n_bins = cfg.origin_time_bins if hi > lo else 1
    edges = np.linspace(lo, hi + 1, n_bins + 1)
    b = np.clip(np.searchsorted(edges, off, side="right") - 1, 0, n_bins - 1)
    city = _poses(log, np.concatenate([[ts_ns], ts_ns + ((edges[:-1] + edges[1:]) / 2).astype(np.int64)]))
    ts_T_fire = np.linalg.inv(city[0]) @ city[1:]  # (B, 4, 4)
    ego_T_sensor = np.stack([log.ego_T_sensor(name) for name in log.meta.lidars])  # (L, 4, 4)
    ts_T_sensor = ts_T_fire[:, None] @ ego_T_sensor[None]  # (B, L, 4, 4)
    n_lidars = len(ego_T_sensor)
    origin_index = b * n_lidars + sw.lidar
    origins = ts_T_sensor[:, :, :3, 3].reshape(-1, 3)
    empty3 = np.zeros((0, 3))
    rays = SweepRays(ts_ns, sw.points_ego, origin_index, origins, off, empty3, empty3, np.zeros(0, np.int64))
    if cfg.missing_per_sample <= 0:
        return rays
    # sensor-frame directions at firing time -> scan pattern -> empty cells, per lidar
    vec = sw.points_ego.astype(np.float64) - origins[origin_index]
    R = ts_T_sensor.reshape(-1, 4, 4)[origin_index, :3, :3]
    az, el = spherical(np.einsum("nji,nj->ni", R, vec))
    laser = sw.laser_number.astype(np.int64)
    miss_o, miss_d, miss_t = [], [], []
    for lid in np.unique(sw.lidar):
        m = sw.lidar == lid
        pattern = infer_pattern(az[m], el[m], laser[m], cfg.azimuth_bins)
        rows, az_c = empty_cells(az[m], laser[m], pattern)
        if not len(az_c):
            continue
        off_c = cell_firing_offsets(az[m], off[m], az_c)
        bc = np.clip(np.searchsorted(edges, off_c, side="right") - 1, 0, n_bins - 1)
        pose = ts_T_sensor[bc, lid]
        dirs = np.einsum("nij,nj->ni", pose[:, :3, :3], from_spherical(az_c, pattern.elevation_rad[rows]))
        # the elevation threshold is about the world, not the sensor (AV2's down_lidar is mounted upside down)
        up = spherical(dirs)[1] >= np.deg2rad(cfg.missing_min_elevation_deg)
        miss_o.append(pose[up, :3, 3])
        miss_d.append(dirs[up])
        miss_t.append(off_c[up].astype(np.int64))
    if miss_o:
        rays.missing_origins, rays.missing_dirs = np.concatenate(miss_o), np.concatenate(miss_d)
        rays.missing_offset_ns = np.concatenate(miss_t)
    return rays


def concat(rays: list[Rays]) -> Rays:
    return Rays(
        *(np.concatenate([getattr(r, f) for r in rays]) for f in ("origins", "endpoints", "dirs", "range_m", "t_s"))
    )


def sample_rays(
    log, sample: Sample, cfg: OccupancyConfig, cache: dict[int, SweepRays] | None = None
) -> tuple[Rays, Rays | None]:
    """All returned rays and all missing rays of a sample's target sweeps, in the t0 frame.

    ``cache`` keeps prepared sweeps across the samples of a log (consecutive samples share most sweeps).
    """
    cache = {} if cache is None else cache
    t0_T_city = np.linalg.inv(log.city_T_ego(np.array([sample.t0_ns]))[0])
    times = ([sample.t0_ns] if cfg.include_present else []) + list(sample.future_ns)
    for ts in list(cache):
        if ts < times[0]:
            del cache[ts]  # samples come in time order: older sweeps are done with
    returned, missing = [], []
    for ts in times:
        if ts not in cache:
            cache[ts] = prepare_sweep(log, ts, cfg)
        sr = cache[ts]
        T = t0_T_city @ log.city_T_ego(np.array([ts]))[0]
        R, tr = T[:3, :3], T[:3, 3]
        points = sr.points.astype(np.float64) @ R.T + tr
        origins = (sr.origins @ R.T + tr)[sr.origin_index]
        vec = points - origins
        rng_m = np.linalg.norm(vec, axis=1)
        ok = rng_m > 1e-3
        returned.append(
            Rays(
                origins[ok],
                points[ok],
                vec[ok] / rng_m[ok, None],
                rng_m[ok],
                ((ts - sample.t0_ns) + sr.offset_ns[ok]) / 1e9,
            )
        )
        if len(sr.missing_offset_ns):
            n = len(sr.missing_offset_ns)
            missing.append(
                Rays(
                    sr.missing_origins @ R.T + tr,
                    np.full((n, 3), np.nan),
                    sr.missing_dirs @ R.T,
                    np.full(n, cfg.missing_range_m),
                    ((ts - sample.t0_ns) + sr.missing_offset_ns) / 1e9,
                )
            )
    return concat(returned), (concat(missing) if missing else None)


def _choose(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    if len(candidates) == 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(candidates, size=n, replace=len(candidates) < n)


def occupancy_queries(
    returned: Rays, missing: Rays | None, scene: SceneConfig, cfg: OccupancyConfig, rng: np.random.Generator
) -> OccupancyQueries:
    """Occupied and free queries along returned rays, free queries along missing rays, inside the extent."""
    box_min, box_max = scene.box_min, scene.box_max
    inside = np.all((returned.endpoints >= box_min) & (returned.endpoints <= box_max), axis=1)
    occ = _choose(rng, np.flatnonzero(inside), cfg.occupied_per_sample)
    occ_xyz = returned.endpoints[occ] + returned.dirs[occ] * rng.uniform(0.0, cfg.delta_occ_m, len(occ))[:, None]

    def free_along(rays: Rays, n: int, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # test a random subset first (most rays qualify); fall back to every ray when too few do
        for pool in (rng.choice(len(stop), min(len(stop), 2 * n), replace=False), np.arange(len(stop))):
            t_in, t_out = ray_box_interval(rays.origins[pool], rays.dirs[pool], box_min, box_max)
            hi = np.minimum(stop[pool], t_out)
            valid = np.flatnonzero(hi > t_in)
            if len(valid) >= n or len(pool) == len(stop):
                break
        pick = _choose(rng, valid, n)
        s = rng.uniform(t_in[pick], hi[pick])
        idx = pool[pick]
        return idx, rays.origins[idx] + rays.dirs[idx] * s[:, None]

    free, free_xyz = free_along(returned, cfg.free_per_sample, returned.range_m - cfg.delta_free_m)
    parts = [
        (occ, occ_xyz, returned.t_s[occ], 1, QuerySource.RETURN, 0),
        (free, free_xyz, returned.t_s[free], 0, QuerySource.FREE, 0),
    ]
    if missing is not None and cfg.missing_per_sample > 0:
        miss, miss_xyz = free_along(missing, cfg.missing_per_sample, missing.range_m)
        parts.append((miss, miss_xyz, missing.t_s[miss], 0, QuerySource.MISSING, len(returned.t_s)))
    return OccupancyQueries(
        xyz=np.concatenate([p[1] for p in parts]),
        t_s=np.concatenate([p[2] for p in parts]),
        occupied=np.concatenate([np.full(len(p[0]), p[3], np.uint8) for p in parts]),
        source=np.concatenate([np.full(len(p[0]), int(p[4]), np.uint8) for p in parts]),
        ray=np.concatenate([p[0] + p[5] for p in parts]),
    )
