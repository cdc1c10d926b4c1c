"""Ingest: AV2 / nuScenes logs into the normalized log store (``gasp_core.data.schema``).

Each log is read through its :class:`~gasp_core.data.source.LogSource`, validated (finite poses and
points, increasing timestamps, calibration present, known categories) and written into a temporary
folder that replaces ``<store>/<log_id>`` only when complete. Logs run in parallel; a log whose
``meta.json`` fingerprint matches its inputs and config is skipped on rerun. Logs whose source has
per-return surface labels (simulated logs' sidecar) store them as an extra ``surface`` sweep column.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from gasp_core.config import from_dict
from gasp_core.data.categories import CATEGORY_MAPS
from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.schema import (
    BOXES,
    BOXES_FILE,
    CALIBRATION_FILE,
    CAMERA_FRAMES_FILE,
    DEFAULT_EGO_DIMS,
    MAP,
    MAP_FILE,
    META_FILE,
    POSES,
    POSES_FILE,
    SCHEMA_VERSION,
    STORE_MANIFEST,
    SWEEP_INDEX,
    SWEEP_INDEX_FILE,
    SWEEP_POINTS,
    SWEEP_POINTS_WITH_SURFACE,
    SWEEP_SURFACE_FIELD,
    SWEEPS_DIR,
    EgoDims,
    LogMeta,
    SkippedInput,
    UnifiedCategory,
)
from gasp_core.data.source import LogSource
from gasp_core.geometry import rotation_to_quat_wxyz
from gasp_core.io import atomic_dir, write_json_atomic
from gasp_core.parallel import map_jobs

log = logging.getLogger(__name__)


@dataclass
class IngestConfig:
    format: Literal["av2", "nuscenes"] = "av2"
    """Source dataset layout."""
    root: str = "data/raw/av2"
    """AV2: the folder holding split folders; nuScenes: the dataroot (holding ``version``/ and maps/)."""
    split: str = "train"
    """AV2: split folder under ``root``; nuScenes: a devkit scene split (``train``, ``val``, ``mini_train``, ...) or
    ``all``."""
    version: str = "v1.0-trainval"
    """nuScenes table version (ignored for AV2)."""
    logs: list[str] | None = None
    """Log ids (AV2) or scene names (nuScenes) to ingest; null for every log of the split."""
    workers: int = 2
    """Logs ingested in parallel."""
    on_bad_sweep: Literal["skip", "error"] = "skip"
    """A sweep that is missing, truncated, empty or holds NaN/inf: skip it (logged and counted) or stop."""
    max_bad_sweep_fraction: float = 0.1
    """Above this fraction of skipped sweeps a log fails anyway: that is not one corrupt sweep."""
    on_bad_log: Literal["error", "skip"] = "error"
    """A log that cannot be ingested (missing poses, calibration, ...): stop the stage, or skip it and count it."""
    on_unknown_category: Literal["error", "other"] = "error"
    """A box category missing from gasp_core.data.categories: stop, or map it to ``other`` and count it."""
    compression: Literal["lz4", "zstd", "none"] = "lz4"
    """Compression of the sweep files (lz4 decodes ~3x faster than zstd for ~14% more bytes)."""
    map_margin_m: float = 80.0
    """Map elements that meet the ego path's bounding box grown by this margin are kept (nuScenes maps are
    city-wide)."""
    ego: EgoDims | None = None
    """Override the ego vehicle's dimensions (default: the embedded world's, else the dataset's published ones)."""


def ingest_config_from_dict(data, strict: bool = False) -> IngestConfig:
    return from_dict(IngestConfig, data, "ingest", strict)


@dataclass
class LogResult:
    log_id: str
    status: Literal["ingested", "up_to_date", "failed"]
    sweeps: int = 0
    sweeps_skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    points: int = 0
    boxes: int = 0
    camera_frames: int = 0
    map_elements: int = 0
    unknown_categories: dict[str, int] = field(default_factory=dict)
    surface_labels: bool = False
    error: str = ""


# --- sources ------------------------------------------------------------------------------------


def list_logs(cfg: IngestConfig) -> list[str]:
    """The log ids the config selects, validated against what the source holds."""
    if cfg.format == "av2":
        from gasp_core.data.av2_reader import AV2LogReader

        available = AV2LogReader.log_ids(Path(cfg.root) / cfg.split)
    else:
        available = [s["name"] for s in _nuscenes_scenes(cfg)]
    if cfg.logs is None:
        return available
    missing = sorted(set(cfg.logs) - set(available))
    if missing:
        raise FileNotFoundError(
            f"log(s) {missing} not found in {cfg.format} {cfg.root} ({cfg.split}); {len(available)} available"
        )
    return list(cfg.logs)


def _nuscenes_scenes(cfg: IngestConfig) -> list[dict]:
    from gasp_core.data.nuscenes_reader import open_nuscenes

    nusc = open_nuscenes(Path(cfg.root), cfg.version)
    scenes = sorted(nusc.scene, key=lambda s: s["name"])
    if cfg.split == "all":
        return scenes
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes(verbose=False)
    if cfg.split not in splits:
        raise ValueError(f"unknown nuScenes split {cfg.split!r}; choose 'all' or one of {sorted(splits)}")
    wanted = set(splits[cfg.split])
    return [s for s in scenes if s["name"] in wanted]


def open_source(cfg: IngestConfig, log_id: str) -> LogSource:
    if cfg.format == "av2":
        from gasp_core.data.av2_reader import AV2LogReader

        return AV2LogReader(Path(cfg.root) / cfg.split, log_id)
    from gasp_core.data.nuscenes_reader import NuScenesLogSource, open_nuscenes

    nusc = open_nuscenes(Path(cfg.root), cfg.version)
    scene = next(s for s in nusc.scene if s["name"] == log_id)
    return NuScenesLogSource(nusc, scene["token"])


def ego_dims(cfg: IngestConfig) -> EgoDims:
    """The config's override, else the embedded world's (the ``ego`` entry of its manifest), else the dataset
    default."""
    if cfg.ego is not None:
        return cfg.ego
    manifest = Path(cfg.root) / "gasp_sim_manifest.json"
    if manifest.is_file():
        ego = json.loads(manifest.read_text()).get("ego")
        fields = ("length_m", "width_m", "height_m", "rear_overhang_m")
        if not isinstance(ego, dict) or any(not isinstance(ego.get(k), (int, float)) for k in fields):
            raise ValueError(
                f"{manifest}: no 'ego' entry with {', '.join(fields)} (an older generator wrote this world): "
                "regenerate it (`make data`) or set ingest.ego"
            )
        return EgoDims(*(float(ego[k]) for k in fields))
    return DEFAULT_EGO_DIMS[cfg.format]


def fingerprint(source: LogSource, cfg: IngestConfig, ego: EgoDims) -> str:
    """Hash of the log's input files (path and size, surface sidecar included), its surface class names and every
    config field that changes the output."""
    root = Path(source.source_root)
    files = []
    for p in source.input_files():
        try:
            rel = str(p.relative_to(root))
        except ValueError:
            rel = str(p)
        files.append((rel, p.stat().st_size if p.exists() else -1))
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("workers", "logs", "root")}
    content = {"schema": SCHEMA_VERSION, "files": files, "settings": settings, "ego": asdict(ego)}
    classes = source.surface_classes()
    if classes is not None:  # absent for unlabelled logs, so their fingerprints stay as they were
        content["surface_classes"] = classes
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()


# --- one log --------------------------------------------------------------------------------------


def _check_increasing(log_id: str, file, times: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(np.diff(times) <= 0)
    if len(bad):
        raise InputError(
            log_id, file, f"{what} timestamps are not strictly increasing: {times[bad[0]]} then {times[bad[0] + 1]}"
        )


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def _sweep_table(data, sweep_schema: pa.Schema) -> pa.Table:
    xyz = np.asarray(data.points_ego, np.float32)
    columns = {
        "x_m": xyz[:, 0],
        "y_m": xyz[:, 1],
        "z_m": xyz[:, 2],
        "intensity": np.asarray(data.intensity, np.float32),
        "laser_number": np.asarray(data.laser_number, np.int16),
        "lidar": np.asarray(data.lidar, np.uint8),
        "offset_ns": np.asarray(data.offset_ns, np.int32),
    }
    if SWEEP_SURFACE_FIELD.name in sweep_schema.names:
        columns[SWEEP_SURFACE_FIELD.name] = np.asarray(data.surface, np.uint8)
    return pa.table(columns, schema=sweep_schema)


def _validate_sweep(source: LogSource, ref, data, surface_classes: list[str] | None) -> None:
    surface = data.surface
    if surface_classes is not None and surface is None:
        raise BadSweepError(source.log_id, ref.file, "sweep has no surface labels but its log has")
    if surface_classes is None and surface is not None:
        raise BadSweepError(source.log_id, ref.file, "sweep has surface labels but its log has no surface classes")
    if surface is not None:
        if len(surface) != len(data.points_ego):
            raise BadSweepError(
                source.log_id,
                ref.file,
                f"surface labels do not match the points ({len(surface)} labels, {len(data.points_ego)} points)",
            )
        if len(surface) and int(np.max(surface)) >= len(surface_classes):
            raise BadSweepError(
                source.log_id,
                ref.file,
                f"surface ids outside the class list (max {int(np.max(surface))}, {len(surface_classes)} classes)",
            )
    if len(data.points_ego) == 0:
        raise BadSweepError(source.log_id, ref.file, "sweep has no points")
    finite = np.isfinite(data.points_ego).all(1)
    if not finite.all():
        raise BadSweepError(source.log_id, ref.file, f"{int((~finite).sum())} points with NaN or inf coordinates")
    if not np.isfinite(np.asarray(data.intensity, np.float64)).all():
        raise BadSweepError(source.log_id, ref.file, "NaN or inf intensity")


def ingest_log(source: LogSource, log_dir: Path, cfg: IngestConfig, ego: EgoDims | None = None) -> LogResult:
    """Validate one log and write it to ``log_dir`` atomically; raises InputError on bad input."""
    ego = ego or ego_dims(cfg)
    fp = fingerprint(source, cfg, ego)
    meta_path = Path(log_dir) / META_FILE
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("fingerprint") == fp:
            return LogResult(
                source.log_id,
                "up_to_date",
                sweeps=old["num_sweeps"],
                sweeps_skipped=len(old["skipped"]),
                points=old["num_points"],
                boxes=old["num_boxes"],
                camera_frames=old["num_camera_frames"],
                map_elements=old["num_map_elements"],
                unknown_categories=old["unknown_categories"],
                surface_labels=old.get("surface_classes") is not None,
            )

    times, poses = source.poses()
    if len(times) == 0:
        raise InputError(source.log_id, source.pose_file, "no ego poses")
    _check_increasing(source.log_id, source.pose_file, times, "pose")
    calibration = source.calibration()
    refs = source.sweep_refs()
    if not refs:
        raise InputError(source.log_id, source.source_root, "log has no lidar sweeps")
    _check_increasing(source.log_id, refs[0].file.parent, np.array([r.timestamp_ns for r in refs]), "sweep")
    frames = source.camera_frames()
    boxes = source.box_records()
    lo, hi = poses[:, :2, 3].min(0) - cfg.map_margin_m, poses[:, :2, 3].max(0) + cfg.map_margin_m
    elements = source.map_elements((float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))

    mapping = CATEGORY_MAPS[source.dataset]
    unknown = Counter(c for c in boxes.category_raw if c not in mapping)
    if unknown and cfg.on_unknown_category == "error":
        raise InputError(
            source.log_id,
            source.annotation_file,
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{sorted(unknown)} (add them to gasp_core/data/categories.py or set on_unknown_category: other)",
        )
    for name, n in unknown.items():
        log.warning("log %s: %d boxes of unknown category %r mapped to 'other'", source.log_id, n, name)
    unified = [mapping.get(c, UnifiedCategory.OTHER).label for c in boxes.category_raw]

    surface_classes = source.surface_classes()
    sweep_schema = SWEEP_POINTS if surface_classes is None else SWEEP_POINTS_WITH_SURFACE
    result = LogResult(
        source.log_id, "ingested", unknown_categories=dict(unknown), surface_labels=surface_classes is not None
    )
    skipped: list[SkippedInput] = []
    with atomic_dir(log_dir) as tmp:
        (tmp / SWEEPS_DIR).mkdir()
        index = {"timestamp_ns": [], "num_points": [], "file": []}
        options = ipc.IpcWriteOptions(compression=None if cfg.compression == "none" else cfg.compression)
        for ref in refs:
            try:
                data = source.read_sweep(ref)
                _validate_sweep(source, ref, data, surface_classes)
            except BadSweepError as exc:
                if cfg.on_bad_sweep == "error":
                    raise
                log.warning("skipping sweep: %s", exc)
                reason = exc.problem.split(" (")[0]
                skipped.append(SkippedInput(exc.file, exc.problem, ref.timestamp_ns))
                result.skip_reasons[reason] = result.skip_reasons.get(reason, 0) + 1
                continue
            rel = f"{SWEEPS_DIR}/{ref.timestamp_ns}.arrow"
            table = _sweep_table(data, sweep_schema)
            with ipc.new_file(str(tmp / rel), sweep_schema, options=options) as writer:
                writer.write_table(table)
            index["timestamp_ns"].append(ref.timestamp_ns)
            index["num_points"].append(table.num_rows)
            index["file"].append(rel)
        result.sweeps_skipped = len(skipped)
        if len(skipped) > cfg.max_bad_sweep_fraction * len(refs):
            raise InputError(
                source.log_id,
                refs[0].file.parent,
                f"{len(skipped)} of {len(refs)} sweeps unusable (more than max_bad_sweep_fraction="
                f"{cfg.max_bad_sweep_fraction}); first: {skipped[0].file}: {skipped[0].reason}",
            )
        result.sweeps = len(index["file"])
        result.points = int(sum(index["num_points"]))
        _write_parquet(pa.table(index, schema=SWEEP_INDEX), tmp / SWEEP_INDEX_FILE)

        q = rotation_to_quat_wxyz(poses[:, :3, :3])
        _write_parquet(
            pa.table(
                {
                    "timestamp_ns": times,
                    "qw": q[:, 0],
                    "qx": q[:, 1],
                    "qy": q[:, 2],
                    "qz": q[:, 3],
                    "tx_m": poses[:, 0, 3],
                    "ty_m": poses[:, 1, 3],
                    "tz_m": poses[:, 2, 3],
                },
                schema=POSES,
            ),
            tmp / POSES_FILE,
        )
        _write_parquet(calibration, tmp / CALIBRATION_FILE)
        _write_parquet(frames, tmp / CAMERA_FRAMES_FILE)
        order = np.lexsort((np.asarray(boxes.track_id), boxes.timestamp_ns))
        _write_parquet(
            pa.table(
                {
                    "timestamp_ns": boxes.timestamp_ns[order],
                    "track_id": np.asarray(boxes.track_id, dtype=object)[order],
                    "category_raw": np.asarray(boxes.category_raw, dtype=object)[order],
                    "category": np.asarray(unified, dtype=object)[order],
                    "tx_m": boxes.center_city[order, 0],
                    "ty_m": boxes.center_city[order, 1],
                    "tz_m": boxes.center_city[order, 2],
                    "qw": boxes.quat_wxyz_city[order, 0],
                    "qx": boxes.quat_wxyz_city[order, 1],
                    "qy": boxes.quat_wxyz_city[order, 2],
                    "qz": boxes.quat_wxyz_city[order, 3],
                    "length_m": boxes.size_lwh_m[order, 0],
                    "width_m": boxes.size_lwh_m[order, 1],
                    "height_m": boxes.size_lwh_m[order, 2],
                    "num_points": boxes.num_points[order],
                },
                schema=BOXES,
            ),
            tmp / BOXES_FILE,
        )
        _write_parquet(
            pa.table(
                {
                    "layer": [e.layer for e in elements],
                    "element_id": [e.element_id for e in elements],
                    "part": [e.part for e in elements],
                    "mark_type": [e.mark_type for e in elements],
                    "closed": [e.closed for e in elements],
                    "x_m": [e.xyz[:, 0].tolist() for e in elements],
                    "y_m": [e.xyz[:, 1].tolist() for e in elements],
                    "z_m": [None if np.isnan(e.xyz[:, 2]).all() else e.xyz[:, 2].tolist() for e in elements],
                },
                schema=MAP,
            ),
            tmp / MAP_FILE,
        )

        result.boxes, result.camera_frames, result.map_elements = len(order), frames.num_rows, len(elements)
        meta = LogMeta(
            log_id=source.log_id,
            dataset=source.dataset,
            city=source.city,
            source_root=str(source.source_root),
            ego=ego,
            lidars=list(source.lidars),
            point_time_offsets=source.point_time_offsets,
            num_sweeps=result.sweeps,
            num_points=result.points,
            num_poses=len(times),
            num_camera_frames=result.camera_frames,
            num_boxes=result.boxes,
            num_map_elements=result.map_elements,
            fingerprint=fp,
            skipped=skipped,
            unknown_categories=dict(unknown),
            surface_classes=surface_classes,
        )
        (tmp / META_FILE).write_text(json.dumps(meta.to_json(), indent=1))
    return result


# --- the stage ------------------------------------------------------------------------------------


def _ingest_one(args: tuple[IngestConfig, str, str, EgoDims]) -> LogResult:
    cfg, log_id, out, ego = args
    try:
        return ingest_log(open_source(cfg, log_id), Path(out) / log_id, cfg, ego)
    except InputError as exc:
        if cfg.on_bad_log == "error":
            raise
        return LogResult(log_id, "failed", error=str(exc))


def ingest(cfg: IngestConfig, out: Path, progress: bool = True) -> dict:
    """Ingest every selected log into ``out``; returns the stage metrics (also written to the manifest)."""
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
        _ingest_one, jobs, cfg.workers, "ingest", progress, postfix=lambda rs: {"sweeps": sum(r.sweeps for r in rs)}
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
