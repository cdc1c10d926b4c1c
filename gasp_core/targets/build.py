"""The ``occupancy_labels`` stage: occupancy and ego-path queries for every training sample of every log."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.io import atomic_dir, write_json_atomic
from gasp_core.parallel import ComputeConfig, map_jobs
from gasp_core.targets import schema
from gasp_core.targets.ego_path import EgoPathConfig, ego_queries
from gasp_core.targets.occupancy import OccupancyConfig, occupancy_queries, sample_rays

log = logging.getLogger(__name__)


@dataclass
class OccupancyLabelsConfig:
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    ego_path: EgoPathConfig = field(default_factory=EgoPathConfig)
    seed: int = 0
    """Query sampling seed (each log draws from its own stream derived from this and its id)."""


def occupancy_labels_config_from_dict(data, strict: bool = False) -> OccupancyLabelsConfig:
    return from_dict(OccupancyLabelsConfig, data, "occupancy_labels", strict)


def log_rng(seed: int, log_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(log_id.encode())])


def _fingerprint(log: StoredLog, scene: SceneConfig, cfg: OccupancyLabelsConfig) -> str:
    settings = {
        "scene": asdict(scene),
        "cfg": asdict(cfg),
        "log": log.meta.fingerprint,
        "schema": [str(schema.OCCUPANCY), str(schema.EGO_PATH)],
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def label_log(log: StoredLog, out_dir: Path, scene: SceneConfig, cfg: OccupancyLabelsConfig) -> dict:
    """Write one log's samples and queries atomically; returns its counts."""
    start = time.perf_counter()
    fp = _fingerprint(log, scene, cfg)
    meta_path = Path(out_dir) / schema.META_FILE
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("fingerprint") == fp:
            return {**old["counts"], "status": "up_to_date", "seconds": time.perf_counter() - start}
    samples = select_samples(log.sweep_timestamps_ns, scene, cfg.occupancy.stride)
    rng = log_rng(cfg.seed, log.log_id)
    counts = {
        "samples": len(samples),
        "occupancy_queries": 0,
        "occupied": 0,
        "missing_ray_queries": 0,
        "ego_queries": 0,
        "ego_inside": 0,
    }
    cache: dict = {}
    rows = {name: [] for name in schema.SAMPLES.names}
    with atomic_dir(out_dir) as tmp:
        with (
            ipc.new_file(str(tmp / schema.OCCUPANCY_FILE), schema.OCCUPANCY) as occ_w,
            ipc.new_file(str(tmp / schema.EGO_PATH_FILE), schema.EGO_PATH) as ego_w,
        ):
            for k, sample in enumerate(samples):
                returned, missing = sample_rays(log, sample, cfg.occupancy, cache)
                q = occupancy_queries(returned, missing, scene, cfg.occupancy, rng)
                e = ego_queries(log, sample, scene, cfg.ego_path, rng)
                occ_w.write_batch(
                    pa.record_batch(
                        {
                            "x_m": q.xyz[:, 0].astype(np.float32),
                            "y_m": q.xyz[:, 1].astype(np.float32),
                            "z_m": q.xyz[:, 2].astype(np.float32),
                            "t_s": q.t_s.astype(np.float16),
                            "occupied": q.occupied,
                            "source": q.source,
                        },
                        schema=schema.OCCUPANCY,
                    )
                )
                ego_w.write_batch(
                    pa.record_batch(
                        {
                            "x_m": e.xy[:, 0].astype(np.float32),
                            "y_m": e.xy[:, 1].astype(np.float32),
                            "t_s": e.t_s.astype(np.float16),
                            "inside": e.inside,
                            "source": e.source,
                        },
                        schema=schema.EGO_PATH,
                    )
                )
                for key, value in (
                    ("batch", k),
                    ("t0_ns", sample.t0_ns),
                    ("past_ns", sample.past_ns),
                    ("future_ns", sample.future_ns),
                    ("num_occupancy", len(q.t_s)),
                    ("num_ego", len(e.t_s)),
                ):
                    rows[key].append(value)
                counts["occupancy_queries"] += len(q.t_s)
                counts["occupied"] += int(q.occupied.sum())
                counts["missing_ray_queries"] += int((q.source == 2).sum())
                counts["ego_queries"] += len(e.t_s)
                counts["ego_inside"] += int(e.inside.sum())
        pq.write_table(pa.table(rows, schema=schema.SAMPLES), tmp / schema.SAMPLES_FILE)
        (tmp / schema.META_FILE).write_text(
            json.dumps(
                {
                    "log_id": log.log_id,
                    "fingerprint": fp,
                    "counts": counts,
                    "scene": asdict(scene),
                    "config": asdict(cfg),
                },
                indent=1,
            )
        )
    return {**counts, "status": "labelled", "seconds": time.perf_counter() - start}


def _label_one(args) -> dict:
    store_dir, log_id, out, scene, cfg = args
    return {"log_id": log_id, **label_log(LogStore(store_dir).log(log_id), Path(out) / log_id, scene, cfg)}


def build_occupancy_labels(
    store_dir: Path,
    *,
    out: Path,
    scene: SceneConfig,
    cfg: OccupancyLabelsConfig,
    progress: bool = True,
    compute: ComputeConfig | None = None,
) -> dict:
    """Label every log of the store (the jobs run on ``compute``, default in this process); returns the stage metrics
    (also in ``<out>/manifest.json``)."""
    start = time.perf_counter()
    store = LogStore(store_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # labels of logs no longer in the store, and leftovers of interrupted runs
        if (
            stale.is_dir()
            and stale.name not in store.log_ids
            and ((stale / schema.META_FILE).is_file() or stale.name.endswith(".tmp"))
        ):
            shutil.rmtree(stale)
    (out / schema.MANIFEST_FILE).unlink(missing_ok=True)
    jobs = [(str(store_dir), log_id, str(out), scene, cfg) for log_id in store.log_ids]
    results = map_jobs(
        _label_one,
        jobs,
        compute or ComputeConfig(backend="sequential"),
        "occupancy_labels",
        progress,
        postfix=lambda rs: {"samples": sum(r["samples"] for r in rs)},
        names=store.log_ids,
        visible=lambda r: [out / r["log_id"] / schema.META_FILE],
    )
    seconds = time.perf_counter() - start
    total = {
        key: sum(r[key] for r in results)
        for key in ("samples", "occupancy_queries", "occupied", "missing_ray_queries", "ego_queries", "ego_inside")
    }
    if total["samples"] == 0:
        raise ValueError(
            f"no training samples in {store_dir}: logs shorter than past_sweeps + horizon_s "
            f"({scene.past_sweeps} sweeps + {scene.horizon_s} s)?"
        )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    labelled = [r for r in results if r["status"] == "labelled"]
    metrics = {
        **total,
        "logs": len(results),
        "logs_labelled": len(labelled),
        "logs_up_to_date": len(results) - len(labelled),
        "occupied_fraction": round(total["occupied"] / max(total["occupancy_queries"], 1), 4),
        "ego_inside_fraction": round(total["ego_inside"] / max(total["ego_queries"], 1), 4),
        "bytes_per_sample": round(size / total["samples"]),
    }
    made = sum(r["occupancy_queries"] + r["ego_queries"] for r in labelled)
    log.info("made %d queries in %.1f s (%.0f queries/s)", made, seconds, made / seconds)  # timings: log only
    write_json_atomic(
        out / schema.MANIFEST_FILE,
        {
            "logs": sorted(r["log_id"] for r in results),
            "scene": asdict(scene),
            "config": asdict(cfg),
            "metrics": metrics,
        },
    )
    return metrics
