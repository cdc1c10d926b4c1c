"""Stage ``task_labels``: every downstream label of every sample, computed once from the log store.

The samples are those of ``occupancy_labels`` (same t0s, same past sweeps), so the 4D occupancy task reuses
that stage's ray queries. Per log, ``<out>/<log_id>.npz`` (numpy arrays only, no pickles) holds, for its S
samples:

- ``voxels``: (S, C, H, W) packed bits, the model input (past sweeps in the t0 frame);
- ``forecast``: (S, T, 3, Hf, Wf) packed bits, vehicle / pedestrian / cyclist cover at ``forecast_times_s``;
- ``map``: (S, 4, Hm, Wm) packed bits, drivable area / crossings / lane dividers / road boundaries;
- ``waypoints``: (S, K, 2) ego positions at ``waypoint_times_s``; ``ego_past``: (S, P, 3) (x, y, t <= 0) at the input
  sweeps' times (odometry: the ego status a planner has); ``boxes``: (B, 7) objects at those times as
  (sample, step, x, y, yaw, length, width) for the collision check;
- ``sem_xyzt``, ``sem_class``, ``sem_sample``: semantic-occupancy queries (0 background, 1 + UnifiedCategory);
- ``ray_origin``, ``ray_dir``, ``ray_t``, ``ray_range``, ``ray_sample``: returned rays of the future sweeps (after t0's,
  the newest input) for depth rendering;
- ``occ_t_min``: (S,) the t0 sweep's last firing time: 4D occupancy is scored only on stored queries after it.

``manifest.json`` (written last) records the settings, shapes and counts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from gasp_core.config import ConfigError
from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.io import atomic_path, write_json_atomic
from gasp_core.models.config import VoxelizerConfig
from gasp_core.models.voxelizer import channels, grid_shape, voxelize
from gasp_core.parallel import ComputeConfig, map_jobs
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig, log_rng
from gasp_core.targets.occupancy import sample_rays
from gasp_core.tasks.bev import BevGrid
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.labels import (
    FORECAST_CLASSES,
    MAP_CLASSES,
    ego_waypoints,
    forecast_labels,
    map_labels,
    objects_at,
    semantic_occupancy,
)

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
SEMANTIC_CLASSES = ("background", "vehicle", "pedestrian", "cyclist", "other")


def forecast_grid(scene: SceneConfig, cfg: TaskLabelsConfig) -> BevGrid:
    return BevGrid(tuple(scene.extent_m[:4]), cfg.bev_resolution_m)


def map_grid(scene: SceneConfig, cfg: TaskLabelsConfig) -> BevGrid:
    return BevGrid(tuple(scene.extent_m[:4]), cfg.map_resolution_m)


def stored_samples(occupancy_dir: Path, log_id: str) -> list[Sample]:
    path = Path(occupancy_dir) / log_id / schema.SAMPLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: occupancy labels do not cover log {log_id}")
    table = pl.read_parquet(path).sort("batch")
    return [
        Sample(r["t0_ns"], r["batch"], list(r["past_ns"]), list(r["future_ns"])) for r in table.iter_rows(named=True)
    ]


def input_end_s(log_: StoredLog, sample: Sample) -> float:
    """The last firing time of the t0 sweep (the newest input), in s after t0, as the stored float16 query times
    round it: 4D-occupancy queries at or before it reconstruct the input rather than forecast."""
    offsets = log_.sweep(sample.t0_ns).offset_ns
    return float(np.float16(float(offsets.max()) / 1e9 if len(offsets) else 0.0))


def _in_box_points(obj, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points spread over the objects' boxes (one object per point, chosen uniformly)."""
    if len(obj.category) == 0 or n <= 0:
        return np.zeros((0, 3))
    k = rng.integers(len(obj.category), size=n)
    local = rng.uniform(-0.5, 0.5, (n, 3)) * obj.size_lwh[k]
    c, s = np.cos(obj.yaw[k]), np.sin(obj.yaw[k])
    return obj.center[k] + np.column_stack(
        [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]]
    )


def label_log(
    log_: StoredLog,
    occupancy_dir: Path,
    scene: SceneConfig,
    vox: VoxelizerConfig,
    occ_cfg: OccupancyLabelsConfig,
    cfg: TaskLabelsConfig,
    with_rays: bool = True,
) -> dict[str, np.ndarray]:
    """All task labels of one log's samples (see the module docstring); the depth-rendering rays only
    ``with_rays`` (they are evaluation targets: training logs skip them)."""
    samples = stored_samples(occupancy_dir, log_.log_id)
    rng = log_rng(cfg.seed, log_.log_id)
    fgrid, mgrid = forecast_grid(scene, cfg), map_grid(scene, cfg)
    fine = BevGrid(fgrid.extent_m, fgrid.resolution_m / 2)
    times = np.asarray(cfg.forecast_times_s, float)
    wp_times = np.asarray(cfg.waypoint_times_s, float)
    occ_file = Path(occupancy_dir) / log_.log_id / schema.OCCUPANCY_FILE
    reader = ipc.open_file(pa.memory_map(str(occ_file)))
    out: dict[str, list] = {
        k: []
        for k in (
            "voxels",
            "forecast",
            "map",
            "waypoints",
            "ego_past",
            "boxes",
            "sem_xyzt",
            "sem_class",
            "sem_sample",
            "ray_origin",
            "ray_dir",
            "ray_t",
            "ray_range",
            "ray_sample",
            "occ_t_min",
        )
    }
    cache: dict = {}
    future_only = replace(occ_cfg.occupancy, include_present=False)  # the t0 sweep is the model's input
    for s, sample in enumerate(samples):
        out["occ_t_min"].append(np.float32(input_end_s(log_, sample)))
        sweeps = [log_.sweep_points_in(ts, sample.t0_ns, intensity=True) for ts in sample.past_ns]
        out["voxels"].append(np.packbits(voxelize(sweeps, scene, vox).astype(bool)))
        f = forecast_labels(log_, sample.t0_ns, times, fine)  # (T, 3, 2H, 2W) -> any-cover max-pool to (T, 3, H, W)
        f = f.reshape(*f.shape[:2], f.shape[2] // 2, 2, f.shape[3] // 2, 2).any(axis=(3, 5))
        out["forecast"].append(np.packbits(f))
        out["map"].append(np.packbits(map_labels(log_, sample.t0_ns, mgrid, cfg.map_line_width_m)))
        out["waypoints"].append(ego_waypoints(log_, sample.t0_ns, wp_times).astype(np.float32))
        past_t = (np.asarray(sample.past_ns, np.int64) - sample.t0_ns) / 1e9  # <= 0: the input sweeps' times
        out["ego_past"].append(np.column_stack([ego_waypoints(log_, sample.t0_ns, past_t), past_t]).astype(np.float32))
        for k, t in enumerate(wp_times):
            obj = objects_at(log_, sample.t0_ns, sample.t0_ns + int(round(t * 1e9)))
            n = len(obj.category)
            out["boxes"].append(
                np.column_stack([np.full(n, s), np.full(n, k), obj.center[:, :2], obj.yaw, obj.size_lwh[:, :2]])
            )
        # semantic occupancy: stored occupancy queries (surfaces and free space) plus points inside boxes
        batch = reader.get_batch(sample.index)
        q = np.column_stack([batch.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "z_m", "t_s")])
        q = q[rng.choice(len(q), min(len(q), cfg.semantic_from_occupancy), replace=False)]
        per_time = max(1, cfg.semantic_in_boxes // len(times))
        extra = []
        for t in np.linspace(0.0, scene.horizon_s, len(times)):
            pts = _in_box_points(objects_at(log_, sample.t0_ns, sample.t0_ns + int(round(t * 1e9))), rng, per_time)
            extra.append(np.column_stack([pts, np.full(len(pts), t)]))
        q = np.concatenate([q, *extra])
        inside = np.all((q[:, :3] >= scene.box_min) & (q[:, :3] <= scene.box_max), axis=1)
        q = q[inside]
        out["sem_xyzt"].append(q.astype(np.float32))
        out["sem_class"].append(semantic_occupancy(log_, sample.t0_ns, q).astype(np.int8))
        out["sem_sample"].append(np.full(len(q), s, np.int32))
        # returned future rays (after t0) whose return lies inside the extent: depth-rendering targets
        if not with_rays:
            continue
        returned, _ = sample_rays(log_, sample, future_only, cache)
        ok = np.flatnonzero(
            np.all((returned.endpoints >= scene.box_min) & (returned.endpoints <= scene.box_max), axis=1)
        )
        pick = rng.choice(ok, min(len(ok), cfg.render_rays), replace=False)
        out["ray_origin"].append(returned.origins[pick].astype(np.float32))
        out["ray_dir"].append(returned.dirs[pick].astype(np.float32))
        out["ray_t"].append(returned.t_s[pick].astype(np.float32))
        out["ray_range"].append(returned.range_m[pick].astype(np.float32))
        out["ray_sample"].append(np.full(len(pick), s, np.int32))
    if not with_rays:
        out.update(
            ray_origin=[np.zeros((0, 3), np.float32)],
            ray_dir=[np.zeros((0, 3), np.float32)],
            ray_t=[np.zeros(0, np.float32)],
            ray_range=[np.zeros(0, np.float32)],
            ray_sample=[np.zeros(0, np.int32)],
        )
    res = {
        k: (
            np.stack(v)
            if k in ("voxels", "forecast", "map", "waypoints", "ego_past", "occ_t_min")
            else np.concatenate(v)
        )
        for k, v in out.items()
    }
    res["boxes"] = res["boxes"].astype(np.float32).reshape(-1, 7)
    res["t0_ns"] = np.array([s.t0_ns for s in samples], np.int64)
    res["ego_dims"] = np.array(
        [log_.meta.ego.length_m, log_.meta.ego.width_m, log_.meta.ego.rear_overhang_m], np.float32
    )
    return res


def _label_one(job) -> dict:
    store_dir, occupancy_dir, out, log_id, scene, vox, occ_cfg, cfg, with_rays = job
    start = time.perf_counter()
    arrays = label_log(LogStore(store_dir).log(log_id), occupancy_dir, scene, vox, occ_cfg, cfg, with_rays)
    with atomic_path(Path(out) / f"{log_id}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return {
        "log_id": log_id,
        "samples": int(len(arrays["t0_ns"])),
        "seconds": time.perf_counter() - start,
        "forecast_positive_fraction": float(np.unpackbits(arrays["forecast"]).mean()),
        "semantic_object_fraction": float((arrays["sem_class"] > 0).mean()),
        "render_rays": int(len(arrays["ray_t"])),
    }


def build_task_labels(
    store_dir: Path,
    occupancy_dir: Path,
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
    process); depth-rendering rays for ``ray_logs`` (default: all). Returns the stage metrics."""
    out = Path(out)
    for key in ("forecast_times_s", "waypoint_times_s"):
        times = getattr(cfg, key)
        if not times or min(times) < 0 or max(times) > scene.horizon_s + 1e-9:
            raise ConfigError(
                f"task_labels.{key} = {times}: times must lie in [0, scene.horizon_s = {scene.horizon_s}]"
            )
    store = LogStore(store_dir)
    missing = [lid for lid in logs if lid not in store.log_ids]
    if missing:
        raise ValueError(f"{store_dir}: the splits name logs the store does not have: {missing}")
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten
    for stale in out.glob("*.npz"):
        if stale.stem not in logs:
            stale.unlink()
    jobs = [
        (store_dir, occupancy_dir, out, lid, scene, vox, occ_cfg, cfg, ray_logs is None or lid in ray_logs)
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
    rows, cols = grid_shape(scene, vox)
    fg, mg = forecast_grid(scene, cfg), map_grid(scene, cfg)
    manifest = {
        "logs": {r["log_id"]: r["samples"] for r in results},
        "scene": asdict(scene),
        "voxelizer": asdict(vox),
        "config": asdict(cfg),
        "voxel_shape": [channels(scene, vox), rows, cols],
        "forecast_shape": [len(cfg.forecast_times_s), len(FORECAST_CLASSES), *fg.shape],
        "map_shape": [len(MAP_CLASSES), *mg.shape],
        "map_classes": list(MAP_CLASSES),
        "forecast_classes": [c.label for c in FORECAST_CLASSES],
        "semantic_classes": list(SEMANTIC_CLASSES),
    }
    write_json_atomic(out / MANIFEST, manifest)
    n = sum(r["samples"] for r in results)
    log.info(
        "labelled %d samples of %d logs in %.1f s of worker time", n, len(results), sum(r["seconds"] for r in results)
    )
    return {
        "logs": len(results),
        "samples": n,
        "forecast_positive_fraction": round(float(np.mean([r["forecast_positive_fraction"] for r in results])), 5),
        "semantic_object_fraction": round(float(np.mean([r["semantic_object_fraction"] for r in results])), 4),
        "render_rays": sum(r["render_rays"] for r in results),
    }


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
            m = self.manifest
            s = len(arrays["t0_ns"])
            for key, shape in (
                ("voxels", m["voxel_shape"]),
                ("forecast", m["forecast_shape"]),
                ("map", m["map_shape"]),
            ):
                size = int(np.prod(shape))
                arrays[key] = np.unpackbits(arrays[key], axis=1)[:, :size].reshape(s, *shape)
            self._cache[log_id] = arrays
        return self._cache[log_id]
