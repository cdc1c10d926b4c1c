"""Generate embedded-world logs in parallel, in the AV2 or nuScenes layout."""

from __future__ import annotations

import time
from pathlib import Path

from gasp_core.io import atomic_dir, write_json_atomic
from gasp_core.parallel import map_jobs
from gasp_core.sim.config import world_config_from_dict
from gasp_core.sim.world import simulate_log


def log_seeds(seed: int, n_logs: int) -> list[int]:
    return [seed * 1000 + i for i in range(n_logs)]


def _av2_job(args: tuple[dict, int, int, str]) -> str:
    from gasp_core.sim.writers.av2_writer import write_av2_log

    cfg_dict, seed, index, split_dir = args
    log = simulate_log(world_config_from_dict(cfg_dict), seed, index)
    return str(write_av2_log(log, Path(split_dir)))


def _nuscenes_job(args: tuple[dict, int, int, str]) -> dict:
    from gasp_core.sim.writers.nuscenes_writer import static_tables, write_nuscenes_log

    cfg_dict, seed, index, root = args
    log = simulate_log(world_config_from_dict(cfg_dict), seed, index)
    tables = write_nuscenes_log(log, Path(root))
    if index == 0:
        for name, rows in static_tables(log).items():
            tables[name] = rows + tables[name]
    return tables


def generate(
    fmt: str,
    out: Path,
    n_logs: int,
    seconds: float,
    seed: int,
    workers: int = 1,
    config: dict | None = None,
    split: str = "train",
    version: str = "v1.0-gasp",
) -> dict:
    """Generate ``n_logs`` logs; returns a manifest (also written to ``out/gasp_sim_manifest.json``)."""
    cfg_dict = dict(config or {})
    cfg_dict["seconds"] = seconds
    world = world_config_from_dict(cfg_dict)  # fail fast on bad keys
    seeds = log_seeds(seed, n_logs)
    start = time.perf_counter()
    out = Path(out)
    if fmt == "av2":
        jobs = [(cfg_dict, s, i, str(out / split)) for i, s in enumerate(seeds)]
        written = map_jobs(_av2_job, jobs, workers, "av2 logs", ordered=True)
    elif fmt == "nuscenes":
        from gasp_core.sim.writers.nuscenes_writer import write_tables

        with atomic_dir(out) as root:
            jobs = [(cfg_dict, s, i, str(root)) for i, s in enumerate(seeds)]
            parts = map_jobs(_nuscenes_job, jobs, workers, "nuscenes logs", ordered=True)
            write_tables(root, version, parts)
            written = [str(out)]
    else:
        raise ValueError(f"unknown format {fmt!r}; expected 'av2' or 'nuscenes'")
    manifest = {
        "format": fmt,
        "logs": n_logs,
        "seconds": seconds,
        "seed": seed,
        "log_seeds": seeds,
        "split": split if fmt == "av2" else None,
        "version": version if fmt == "nuscenes" else None,
        "config": cfg_dict,
        # the ego's box, for ingest (which reads it here rather than importing the simulator's config)
        "ego": {
            "length_m": world.ego_length_m,
            "width_m": world.ego_width_m,
            "height_m": world.ego_height_m,
            "rear_overhang_m": world.ego_rear_overhang_m,
        },
        "written": [str(Path(w).relative_to(out)) if Path(w) != out else "." for w in written],
    }
    write_json_atomic(out / "gasp_sim_manifest.json", manifest)  # no timings: the data must hash the same
    manifest["generation_s"] = round(time.perf_counter() - start, 2)
    return manifest
