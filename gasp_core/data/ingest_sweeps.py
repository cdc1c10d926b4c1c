"""Lidar sweeps during ingest: validating one sweep (points, intensity and the surface-label sidecar) and turning it
into the store's Arrow table (with the ``surface`` column when its log is labelled)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gasp_core.data.errors import BadSweepError
from gasp_core.data.schema import SWEEP_SURFACE_FIELD
from gasp_core.data.source import LogSource


def sweep_table(data, sweep_schema: pa.Schema) -> pa.Table:
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


def validate_sweep(source: LogSource, ref, data, surface_classes: list[str] | None) -> None:
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
