"""Ingest: AV2 / nuScenes logs into the normalized log store (``gasp_core.data.schema``).

Each log is read through its :class:`~gasp_core.data.source.LogSource`, validated (finite poses and
points, increasing timestamps, calibration present, known categories) and written into a temporary
folder that replaces ``<store>/<log_id>`` only when complete. Logs run in parallel; a log whose
``meta.json`` fingerprint matches its inputs and config is skipped on rerun. Logs whose source has
per-return surface labels (simulated logs' sidecar) store them as an extra ``surface`` sweep column.

The pieces: :mod:`gasp_core.data.ingest_config` (settings), :mod:`gasp_core.data.ingest_source` (log selection, ego,
fingerprint), :mod:`gasp_core.data.ingest_sweeps` (one sweep), :mod:`gasp_core.data.ingest_convert` (one log); this
module walks the selected logs, counts skips and failures and writes the store manifest.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from gasp_core.data.errors import InputError
from gasp_core.data.ingest_config import IngestConfig, ingest_config_from_dict
from gasp_core.data.ingest_convert import LogResult, ingest_log
from gasp_core.data.ingest_source import ego_dims, fingerprint, list_logs, open_source
from gasp_core.data.schema import META_FILE, SCHEMA_VERSION, STORE_MANIFEST, EgoDims
from gasp_core.io import write_json_atomic
from gasp_core.parallel import ComputeConfig, map_jobs

__all__ = [
    "IngestConfig",
    "LogResult",
    "ego_dims",
    "fingerprint",
    "ingest",
    "ingest_config_from_dict",
    "ingest_log",
    "list_logs",
    "open_source",
]

log = logging.getLogger(__name__)


def _ingest_one(args: tuple[IngestConfig, str, str, EgoDims]) -> LogResult:
    cfg, log_id, out, ego = args
    try:
        return ingest_log(open_source(cfg, log_id), Path(out) / log_id, cfg, ego)
    except InputError as exc:
        if cfg.on_bad_log == "error":
            raise
        return LogResult(log_id, "failed", error=str(exc))


def ingest(cfg: IngestConfig, out: Path, *, progress: bool = True, compute: ComputeConfig | None = None) -> dict:
    """Ingest every selected log into ``out`` (the jobs run on ``compute``, default in this process); returns the stage
    metrics (also written to the manifest)."""
    out = Path(out)
    start = time.perf_counter()
    log_ids = list_logs(cfg)
    if not log_ids:
        raise FileNotFoundError(f"no logs found in {cfg.format} {cfg.root} ({cfg.split})")
    ego = ego_dims(cfg)
    out.mkdir(parents=True, exist_ok=True)
    # logs no longer selected (and leftovers of interrupted runs) would make the store disagree with its params
    for stale in out.iterdir():
        if (
            stale.is_dir()
            and stale.name not in log_ids
            and ((stale / META_FILE).is_file() or stale.name.endswith(".tmp"))
        ):
            log.info("removing %s: not selected by the ingest params", stale)
            shutil.rmtree(stale)
    (out / STORE_MANIFEST).unlink(missing_ok=True)
    jobs = [(cfg, log_id, str(out), ego) for log_id in log_ids]
    results = map_jobs(
        _ingest_one,
        jobs,
        compute or ComputeConfig(backend="sequential"),
        "ingest",
        progress,
        postfix=lambda rs: {"sweeps": sum(r.sweeps for r in rs)},
        names=log_ids,
        visible=lambda r: [out / r.log_id / META_FILE] if r.status != "failed" else [],
    )
    results.sort(key=lambda r: r.log_id)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        log.error("log %s skipped: %s", r.log_id, r.error)
    seconds = time.perf_counter() - start
    store_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n_sweeps = sum(r.sweeps for r in results)
    metrics = {
        "logs": len(results),
        "logs_ingested": sum(r.status == "ingested" for r in results),
        "logs_up_to_date": sum(r.status == "up_to_date" for r in results),
        "logs_failed": len(failed),
        "sweeps": n_sweeps,
        "sweeps_skipped": sum(r.sweeps_skipped for r in results),
        "sweeps_skipped_by_reason": dict(sum((Counter(r.skip_reasons) for r in results), Counter())),
        "points": sum(r.points for r in results),
        "boxes": sum(r.boxes for r in results),
        "camera_frames": sum(r.camera_frames for r in results),
        "map_elements": sum(r.map_elements for r in results),
        "unknown_category_boxes": sum(sum(r.unknown_categories.values()) for r in results),
        "logs_with_surface_labels": sum(r.surface_labels for r in results if r.status != "failed"),
        "store_bytes": store_bytes,
        "store_bytes_per_sweep": round(store_bytes / max(n_sweeps, 1)),
    }
    # timings go to the log, not into outputs or metrics: those must be identical on every rerun
    done = sum(r.sweeps for r in results if r.status == "ingested")
    log.info("ingested %d sweeps in %.1f s (%.1f sweeps/s)", done, seconds, done / seconds)
    write_json_atomic(
        out / STORE_MANIFEST,
        {
            "schema_version": SCHEMA_VERSION,
            "dataset": cfg.format,
            "config": asdict(cfg),
            "logs": [r.log_id for r in results if r.status != "failed"],
            "failed": {r.log_id: r.error for r in failed},
            "metrics": metrics,
        },
    )
    return metrics
