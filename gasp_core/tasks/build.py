"""Stage ``task_labels``: every downstream label of every sample, computed once from the log store.

The samples are those of ``occupancy_labels`` (same t0s, same past sweeps), so the 4D occupancy task reuses
that stage's ray queries. Per log, ``<out>/<log_id>.npz`` (numpy arrays only, no pickles) holds, for its S
samples, ``voxels``: (S, C, H, W) packed bits, the model input (past sweeps in the t0 frame); ``t0_ns``; and what
each builder of :data:`LABEL_BUILDERS` stores (its docstring lists its arrays: ``forecast``, ``map``, ``waypoints``,
``ego_past``, ``boxes``, ``ego_dims``, ``sem_*``, ``ray_*``, ``occ_t_min``).

``manifest.json`` (written last) records the settings, shapes and counts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.io import atomic_path, write_json_atomic
from gasp_core.models.config import VoxelizerConfig
from gasp_core.models.voxelizer import channels, grid_shape, voxelize
from gasp_core.parallel import ComputeConfig, map_jobs
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig, log_rng
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.forecast.labels import ForecastLabels
from gasp_core.tasks.label_builder import LabelBuilder, LogContext
from gasp_core.tasks.map.labels import MapLabels
from gasp_core.tasks.occupancy.labels import OccupancyLabels
from gasp_core.tasks.semantic_occupancy.labels import SemanticOccupancyLabels
from gasp_core.tasks.trajectory.labels import TrajectoryLabels

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def stored_samples(occupancy_dir: Path, log_id: str) -> list[Sample]:
    path = Path(occupancy_dir) / log_id / schema.SAMPLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: occupancy labels do not cover log {log_id}")
    table = pl.read_parquet(path).sort("batch")
    return [
        Sample(r["t0_ns"], r["batch"], list(r["past_ns"]), list(r["future_ns"])) for r in table.iter_rows(named=True)
    ]


class InputLabels(LabelBuilder):
    """``voxels``: (S, C, H, W) packed bits, the model input (past sweeps in the t0 frame), which every task reads."""

    keys = ("voxels",)
    stacked = frozenset(keys)
    packed = {"voxels": "voxel_shape"}

    @classmethod
    def manifest(cls, scene, vox, cfg):
        return {"voxel_shape": [channels(scene, vox), *grid_shape(scene, vox)]}

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        log_, ctx = self.ctx.log, self.ctx
        sweeps = [log_.sweep_points_in(ts, sample.t0_ns, intensity=True) for ts in sample.past_ns]
        return {"voxels": np.packbits(voxelize(sweeps, ctx.scene, ctx.vox).astype(bool))}


LABEL_BUILDERS: list[type[LabelBuilder]] = [
    InputLabels,
    ForecastLabels,
    MapLabels,
    TrajectoryLabels,
    SemanticOccupancyLabels,
    OccupancyLabels,
]
"""Every builder the task labels stage runs, in the order they draw from each log's random stream (and their arrays
are stored): the model input, then each registered task's (:func:`gasp_core.tasks.registry.register` adds a task's
builders here)."""


def label_log(
    log_: StoredLog,
    occupancy_dir: Path,
    scene: SceneConfig,
    vox: VoxelizerConfig,
    occ_cfg: OccupancyLabelsConfig,
    cfg: TaskLabelsConfig,
    with_rays: bool = True,
    builders: tuple[type[LabelBuilder], ...] | None = None,
) -> dict[str, np.ndarray]:
    """All task labels of one log's samples (see the module docstring), by ``builders`` (default
    :data:`LABEL_BUILDERS`) in turn on each sample; the evaluation-only labels (depth-rendering rays) only
    ``with_rays`` (training logs skip them)."""
    samples = stored_samples(occupancy_dir, log_.log_id)
    ctx = LogContext(
        log_, samples, Path(occupancy_dir), scene, vox, occ_cfg, cfg, log_rng(cfg.seed, log_.log_id), with_rays
    )
    built = [b(ctx) for b in (LABEL_BUILDERS if builders is None else builders)]
    per_sample: list[dict[str, list]] = [{k: [] for k in b.keys} for b in built]
    for s, sample in enumerate(samples):
        for b, out in zip(built, per_sample):
            for k, v in b.sample(s, sample).items():
                out[k].append(v)
    res: dict[str, np.ndarray] = {}
    for b, out in zip(built, per_sample):
        res.update(b.finish(out))
    res["t0_ns"] = np.array([s.t0_ns for s in samples], np.int64)
    for b in built:
        res.update(b.log_arrays())
    return res


def _label_one(job) -> dict:
    store_dir, occupancy_dir, out, log_id, scene, vox, occ_cfg, cfg, with_rays, builders = job
    start = time.perf_counter()
    arrays = label_log(LogStore(store_dir).log(log_id), occupancy_dir, scene, vox, occ_cfg, cfg, with_rays, builders)
    with atomic_path(Path(out) / f"{log_id}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    result = {"log_id": log_id, "samples": int(len(arrays["t0_ns"])), "seconds": time.perf_counter() - start}
    for b in builders:
        result.update(b.log_metrics(arrays))
    return result


def build_task_labels(
    store_dir: Path,
    occupancy_dir: Path,
    *,
    out: Path,
    scene: SceneConfig,
    vox: VoxelizerConfig,
    occ_cfg: OccupancyLabelsConfig,
    cfg: TaskLabelsConfig,
    logs: list[str],
    progress: bool = True,
    ray_logs: list[str] | None = None,
    compute: ComputeConfig | None = None,
) -> dict:
    """Label ``logs`` into ``out`` (one npz each, then the manifest; the jobs run on ``compute``, default in this
    process) with every builder of :data:`LABEL_BUILDERS`; depth-rendering rays for ``ray_logs`` (default: all).
    Returns the stage metrics."""
    out = Path(out)
    builders = tuple(LABEL_BUILDERS)
    for b in builders:
        b.check(scene, cfg)
    store = LogStore(store_dir)
    missing = [lid for lid in logs if lid not in store.log_ids]
    if missing:
        raise ValueError(f"{store_dir}: the splits name logs the store does not have: {missing}")
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten
    for stale in out.glob("*.npz"):
        if stale.stem not in logs:
            stale.unlink()
    jobs = [
        (store_dir, occupancy_dir, out, lid, scene, vox, occ_cfg, cfg, ray_logs is None or lid in ray_logs, builders)
        for lid in logs
    ]
    results = map_jobs(
        _label_one,
        jobs,
        compute or ComputeConfig(backend="sequential"),
        "task labels",
        progress=progress,
        ordered=True,
        names=logs,
        visible=lambda r: [out / f"{r['log_id']}.npz"],
    )
    manifest = {
        "logs": {r["log_id"]: r["samples"] for r in results},
        "scene": asdict(scene),
        "voxelizer": asdict(vox),
        "config": asdict(cfg),
    }
    for b in builders:
        manifest.update(b.manifest(scene, vox, cfg))
    write_json_atomic(out / MANIFEST, manifest)
    n = sum(r["samples"] for r in results)
    log.info(
        "labelled %d samples of %d logs in %.1f s of worker time", n, len(results), sum(r["seconds"] for r in results)
    )
    metrics: dict = {"logs": len(results), "samples": n}
    for b in builders:
        metrics.update(b.stage_metrics(results))
    return metrics


class TaskLabels:
    """Reads what ``build_task_labels`` wrote: per-log arrays, unpacked on demand."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: task labels are incomplete (rerun the task_labels stage)")
        self.manifest = json.loads(path.read_text())
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def log(self, log_id: str) -> dict[str, np.ndarray]:
        if log_id not in self._cache:
            if log_id not in self.manifest["logs"]:
                raise KeyError(f"{self.root}: no task labels for log {log_id}")
            with np.load(self.root / f"{log_id}.npz", allow_pickle=False) as z:
                arrays = dict(z)
            s = len(arrays["t0_ns"])
            packed = {k: shape_key for b in LABEL_BUILDERS for k, shape_key in b.packed.items() if k in arrays}
            for key, shape_key in packed.items():
                shape = self.manifest[shape_key]
                size = int(np.prod(shape))
                arrays[key] = np.unpackbits(arrays[key], axis=1)[:, :size].reshape(s, *shape)
            self._cache[log_id] = arrays
        return self._cache[log_id]
