"""One log into the store: validate a :class:`~gasp_core.data.source.LogSource` (poses, sweeps, categories) and
write its folder atomically, or report it up to date when its ``meta.json`` fingerprint still matches."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from gasp_core.data.categories import CATEGORY_MAPS
from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.ingest_config import IngestConfig
from gasp_core.data.ingest_source import ego_dims, fingerprint
from gasp_core.data.ingest_sweeps import sweep_table, validate_sweep
from gasp_core.data.schema import (
    BOXES,
    BOXES_FILE,
    CALIBRATION_FILE,
    CAMERA_FRAMES_FILE,
    MAP,
    MAP_FILE,
    META_FILE,
    POSES,
    POSES_FILE,
    SWEEP_INDEX,
    SWEEP_INDEX_FILE,
    SWEEP_POINTS,
    SWEEP_POINTS_WITH_SURFACE,
    SWEEPS_DIR,
    EgoDims,
    LogMeta,
    SkippedInput,
    UnifiedCategory,
)
from gasp_core.data.source import LogSource
from gasp_core.geometry import rotation_to_quat_wxyz
from gasp_core.io import atomic_dir

# the name ingest has always logged under, so the stage's log lines read as before the split
log = logging.getLogger("gasp_core.data.ingest")


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


def _check_increasing(log_id: str, file, times: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(np.diff(times) <= 0)
    if len(bad):
        raise InputError(
            log_id, file, f"{what} timestamps are not strictly increasing: {times[bad[0]]} then {times[bad[0] + 1]}"
        )


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


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
                validate_sweep(source, ref, data, surface_classes)
            except BadSweepError as exc:
                if cfg.on_bad_sweep == "error":
                    raise
                log.warning("skipping sweep: %s", exc)
                reason = exc.problem.split(" (")[0]
                skipped.append(SkippedInput(exc.file, exc.problem, ref.timestamp_ns))
                result.skip_reasons[reason] = result.skip_reasons.get(reason, 0) + 1
                continue
            rel = f"{SWEEPS_DIR}/{ref.timestamp_ns}.arrow"
            table = sweep_table(data, sweep_schema)
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
