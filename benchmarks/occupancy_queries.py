"""Occupancy + ego-path query generation: the vectorized labeller against a plain per-ray Python reference.

    python benchmarks/occupancy_queries.py [--store data/store] [--samples 3]

Both run in this process on the same samples of the first log of the store, with the same algorithm
(sweeps prepared once and reused across samples, 16 origin time bins per sweep, the same query
counts): the reference walks rays, cells and queries one at a time in Python, the labeller does the
same with array operations. Prints queries/s of each and the speed-up.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.data.store import LogStore
from gasp_core.targets.ego_path import EgoPathConfig, ego_queries, footprint_local
from gasp_core.targets.occupancy import OccupancyConfig, occupancy_queries, sample_rays
from gasp_core.targets.scan_pattern import TWO_PI


def _mat_vec(T, v):
    return [
        T[0][0] * v[0] + T[0][1] * v[1] + T[0][2] * v[2] + T[0][3],
        T[1][0] * v[0] + T[1][1] * v[1] + T[1][2] * v[2] + T[1][3],
        T[2][0] * v[0] + T[2][1] * v[1] + T[2][2] * v[2] + T[2][3],
    ]


def _rot_vec(T, v):
    return [
        T[0][0] * v[0] + T[0][1] * v[1] + T[0][2] * v[2],
        T[1][0] * v[0] + T[1][1] * v[1] + T[1][2] * v[2],
        T[2][0] * v[0] + T[2][1] * v[1] + T[2][2] * v[2],
    ]


def _slab(o, d, lo, hi):
    t_in, t_out = 0.0, math.inf
    for k in range(3):
        if d[k] == 0.0:
            if not lo[k] <= o[k] <= hi[k]:
                return 1.0, 0.0
            continue
        a, b = (lo[k] - o[k]) / d[k], (hi[k] - o[k]) / d[k]
        t_in, t_out = max(t_in, min(a, b)), min(t_out, max(a, b))
    return t_in, t_out


class Reference:
    """The same labels, one ray / cell / query at a time."""

    def __init__(self, log, scene: SceneConfig, cfg: OccupancyConfig, ego_cfg: EgoPathConfig) -> None:
        self.log, self.scene, self.cfg, self.ego_cfg = log, scene, cfg, ego_cfg
        self.cache: dict[int, tuple] = {}
        self.origins_ego = [log.ego_T_sensor(n) for n in log.meta.lidars]

    def prepare(self, ts):
        sw = self.log.sweep(ts)
        off = sw.offset_ns.tolist()
        lo, hi = min(off), max(off)
        bins = self.cfg.origin_time_bins if hi > lo else 1
        width = (hi + 1 - lo) / bins
        city_ts = np.linalg.inv(self.log.city_T_ego(ts)[0])
        fire = [city_ts @ self.log.city_T_ego(ts + int(lo + (b + 0.5) * width))[0] for b in range(bins)]
        sensor = [[(f @ s).tolist() for s in self.origins_ego] for f in fire]
        pts, origins, offs, hits = [], [], [], {}
        for p, o_ns, lid, laser in zip(sw.points_ego.tolist(), off, sw.lidar.tolist(), sw.laser_number.tolist()):
            b = min(int((o_ns - lo) / width), bins - 1)
            T = sensor[b][lid]
            o = [T[0][3], T[1][3], T[2][3]]
            v = [p[0] - o[0], p[1] - o[1], p[2] - o[2]]
            s = [
                T[0][0] * v[0] + T[1][0] * v[1] + T[2][0] * v[2],
                T[0][1] * v[0] + T[1][1] * v[1] + T[2][1] * v[2],
                T[0][2] * v[0] + T[1][2] * v[1] + T[2][2] * v[2],
            ]
            az, el = math.atan2(s[1], s[0]), math.atan2(s[2], math.hypot(s[0], s[1]))
            hits.setdefault((lid, laser), []).append((az, el, o_ns))
            pts.append(p)
            origins.append(o)
            offs.append(o_ns)
        missing = []
        if self.cfg.missing_per_sample > 0:
            for lid in set(k[0] for k in hits):
                lasers = {k[1]: v for k, v in hits.items() if k[0] == lid and len(v) >= 50}
                steps = []
                for v in lasers.values():
                    a = sorted(x[0] for x in v)
                    d = sorted(y - x for x, y in zip(a, a[1:]) if y - x > 1e-6)
                    steps.append(d[len(d) // 2])
                n_az = round(TWO_PI / sorted(steps)[len(steps) // 2])
                for laser, v in lasers.items():
                    el = sorted(x[1] for x in v)[len(v) // 2]
                    cells = {int(((x[0] + math.pi) % TWO_PI) / TWO_PI * n_az) % n_az for x in v}
                    by_az = sorted((x[0], x[2]) for x in v)
                    for c in range(n_az):
                        if c in cells or (c - 1) % n_az in cells or (c + 1) % n_az in cells:
                            continue
                        az = (c + 0.5) / n_az * TWO_PI - math.pi
                        near = min(by_az, key=lambda x: abs(x[0] - az))[1]
                        b = min(max(int((near - lo) / width), 0), bins - 1)
                        T = sensor[b][lid]
                        d = _rot_vec(T, [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
                        if math.atan2(d[2], math.hypot(d[0], d[1])) >= math.radians(self.cfg.missing_min_elevation_deg):
                            missing.append(([T[0][3], T[1][3], T[2][3]], d, near))
        return pts, origins, offs, missing

    def sample(self, smp, rng):
        t0_T_city = np.linalg.inv(self.log.city_T_ego(smp.t0_ns)[0])
        rays, miss = [], []
        for ts in [smp.t0_ns] + smp.future_ns:
            if ts not in self.cache:
                self.cache[ts] = self.prepare(ts)
            pts, origins, offs, missing = self.cache[ts]
            T = (t0_T_city @ self.log.city_T_ego(ts)[0]).tolist()
            for p, o, o_ns in zip(pts, origins, offs):
                pp, oo = _mat_vec(T, p), _mat_vec(T, o)
                v = [pp[0] - oo[0], pp[1] - oo[1], pp[2] - oo[2]]
                r = math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
                if r > 1e-3:
                    rays.append((oo, pp, [v[0] / r, v[1] / r, v[2] / r], r, (ts - smp.t0_ns + o_ns) / 1e9))
            for o, d, o_ns in missing:
                miss.append(
                    (_mat_vec(T, o), None, _rot_vec(T, d), self.cfg.missing_range_m, (ts - smp.t0_ns + o_ns) / 1e9)
                )
        lo, hi = list(self.scene.box_min), list(self.scene.box_max)
        out = []
        inside = [k for k, r in enumerate(rays) if all(lo[i] <= r[1][i] <= hi[i] for i in range(3))]
        for k in rng.choice(inside, self.cfg.occupied_per_sample):
            o, p, d, r, t = rays[k]
            u = rng.uniform(0, self.cfg.delta_occ_m)
            out.append((p[0] + d[0] * u, p[1] + d[1] * u, p[2] + d[2] * u, t, 1))
        for pool, n, delta in (
            (rays, self.cfg.free_per_sample, self.cfg.delta_free_m),
            (miss, self.cfg.missing_per_sample, 0.0),
        ):
            made = 0
            while made < n and pool:
                o, p, d, r, t = pool[int(rng.integers(len(pool)))]
                t_in, t_out = _slab(o, d, lo, hi)
                top = min(r - delta, t_out)
                if top > t_in:
                    s = rng.uniform(t_in, top)
                    out.append((o[0] + d[0] * s, o[1] + d[1] * s, o[2] + d[2] * s, t, 0))
                    made += 1
        # ego path: one pose lookup and one footprint test per query
        x0, x1, y0, y1 = footprint_local(self.log.meta.ego)
        n_ego = self.ego_cfg.positives_per_sample + self.ego_cfg.near_per_sample + self.ego_cfg.far_per_sample
        for _ in range(n_ego):
            t = rng.uniform(0, self.scene.horizon_s)
            P = (t0_T_city @ self.log.city_T_ego(smp.t0_ns + int(t * 1e9))[0]).tolist()
            x, y = rng.uniform(-40, 40), rng.uniform(-40, 40)
            dx, dy = x - P[0][3], y - P[1][3]
            lx, ly = P[0][0] * dx + P[1][0] * dy, P[0][1] * dx + P[1][1] * dy
            out.append((x, y, 0.0, t, int(x0 <= lx <= x1 and y0 <= ly <= y1)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="data/store")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    store = LogStore(args.store)
    log = store.log(store.log_ids[0])
    scene, cfg, ego_cfg = SceneConfig(), OccupancyConfig(), EgoPathConfig()
    samples = select_samples(log.sweep_timestamps_ns, scene, cfg.stride)[: args.samples]
    rng = np.random.default_rng(0)

    t = time.perf_counter()
    cache, n_fast = {}, 0
    for smp in samples:
        returned, missing = sample_rays(log, smp, cfg, cache)
        n_fast += len(occupancy_queries(returned, missing, scene, cfg, rng).t_s) + len(
            ego_queries(log, smp, scene, ego_cfg, rng).t_s
        )
    fast = time.perf_counter() - t

    t = time.perf_counter()
    ref = Reference(log, scene, cfg, ego_cfg)
    n_ref = sum(len(ref.sample(smp, rng)) for smp in samples)
    slow = time.perf_counter() - t

    rays = sum(
        log.sweep_index.filter(log.sweep_index["timestamp_ns"] == ts)["num_points"][0]
        for ts in {t for s in samples for t in [s.t0_ns] + s.future_ns}
    )
    print(f"occupancy + ego-path queries: {len(samples)} samples of log {log.log_id} ({rays:,} distinct rays)")
    print(f"  per-ray Python reference : {n_ref / slow:10.0f} queries/s  ({slow:.1f} s)")
    print(f"  vectorized labeller      : {n_fast / fast:10.0f} queries/s  ({fast:.1f} s)")
    print(f"  speed-up                 : {slow / fast * n_fast / n_ref:10.1f}x")


if __name__ == "__main__":
    main()
