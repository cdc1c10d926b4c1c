"""Read the normalized log store (``gasp_core.data.schema``): what every later stage uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.ipc as ipc

from gasp_core.data.schema import (
    BOXES_FILE,
    CALIBRATION_FILE,
    CAMERA_FRAMES_FILE,
    MAP_FILE,
    META_FILE,
    POSES_FILE,
    STORE_MANIFEST,
    SWEEP_INDEX_FILE,
    SWEEP_SURFACE_FIELD,
    LogMeta,
)
from gasp_core.geometry import PoseInterpolator, make_se3, quat_wxyz_to_rotation


@dataclass
class StoredSweep:
    timestamp_ns: int
    points_ego: np.ndarray  # (N, 3) float32, ego frame at timestamp_ns
    intensity: np.ndarray  # (N,) float32
    laser_number: np.ndarray  # (N,) int16
    lidar: np.ndarray  # (N,) uint8 index into LogMeta.lidars
    offset_ns: np.ndarray  # (N,) int32
    surface: np.ndarray | None = None  # (N,) uint8 index into LogMeta.surface_classes; None without labels


def _pose_matrices(frame: pl.DataFrame) -> np.ndarray:
    q = frame.select("qw", "qx", "qy", "qz").to_numpy()
    t = frame.select("tx_m", "ty_m", "tz_m").to_numpy()
    return make_se3(quat_wxyz_to_rotation(q), t) if len(q) else np.zeros((0, 4, 4))


class StoredLog:
    """One log folder of the store."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        if not (self.log_dir / META_FILE).is_file():
            raise FileNotFoundError(f"{self.log_dir} is not a complete ingested log (no {META_FILE})")
        self.meta = LogMeta.from_json(json.loads((self.log_dir / META_FILE).read_text()))
        self.log_id = self.meta.log_id

    def _table(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.log_dir / name)

    @cached_property
    def poses(self) -> pl.DataFrame:
        return self._table(POSES_FILE)

    @cached_property
    def _pose_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.poses["timestamp_ns"].to_numpy(), _pose_matrices(self.poses)

    def pose_range_ns(self) -> tuple[int, int]:
        times = self._pose_arrays[0]
        return int(times[0]), int(times[-1])

    @cached_property
    def _interpolator(self) -> PoseInterpolator:
        times, mats = self._pose_arrays
        return PoseInterpolator((times - times[0]).astype(np.float64), mats)

    def city_T_ego(self, timestamps_ns) -> np.ndarray:
        """Poses (N, 4, 4) at any times within the log (slerp between the stored ones)."""
        query = np.atleast_1d(np.asarray(timestamps_ns, dtype=np.int64))
        return self._interpolator((query - self._pose_arrays[0][0]).astype(np.float64))

    @cached_property
    def calibration(self) -> pl.DataFrame:
        return self._table(CALIBRATION_FILE)

    def ego_T_sensor(self, sensor_name: str) -> np.ndarray:
        row = self.calibration.filter(pl.col("sensor_name") == sensor_name)
        if row.height != 1:
            raise KeyError(f"log {self.log_id}: no calibration for sensor {sensor_name!r}")
        return _pose_matrices(row)[0]

    def intrinsics(self, camera: str) -> np.ndarray:
        row = self.calibration.filter((pl.col("sensor_name") == camera) & (pl.col("kind") == "camera"))
        if row.height != 1:
            raise KeyError(f"log {self.log_id}: no intrinsics for camera {camera!r}")
        r = row.row(0, named=True)
        return np.array([[r["fx_px"], 0.0, r["cx_px"]], [0.0, r["fy_px"], r["cy_px"]], [0.0, 0.0, 1.0]])

    def lidar_origins_ego(self) -> np.ndarray:
        """(L, 3) origin of each lidar of ``meta.lidars`` in the ego frame."""
        return np.stack([self.ego_T_sensor(name)[:3, 3] for name in self.meta.lidars])

    @cached_property
    def sweep_index(self) -> pl.DataFrame:
        return self._table(SWEEP_INDEX_FILE)

    @property
    def sweep_timestamps_ns(self) -> np.ndarray:
        return self.sweep_index["timestamp_ns"].to_numpy()

    def sweep(self, timestamp_ns: int) -> StoredSweep:
        rows = self.sweep_index.filter(pl.col("timestamp_ns") == timestamp_ns)
        if rows.height != 1:
            raise KeyError(f"log {self.log_id}: no sweep at {timestamp_ns}")
        with ipc.open_file(str(self.log_dir / rows["file"][0])) as reader:
            t = reader.read_all()
        xyz = np.column_stack([t[c].to_numpy() for c in ("x_m", "y_m", "z_m")])
        surface = t[SWEEP_SURFACE_FIELD.name].to_numpy() if SWEEP_SURFACE_FIELD.name in t.column_names else None
        return StoredSweep(
            timestamp_ns,
            xyz,
            t["intensity"].to_numpy(),
            t["laser_number"].to_numpy(),
            t["lidar"].to_numpy(),
            t["offset_ns"].to_numpy(),
            surface,
        )

    def sweep_points_in(self, timestamp_ns: int, t0_ns: int, intensity: bool = False) -> np.ndarray:
        """(N, 3) float64 points of a sweep moved into the ego frame at ``t0_ns``; with ``intensity``, (N, 4) with the
        return's intensity as the fourth column (what the voxelizer's intensity levels read)."""
        T = np.linalg.inv(self.city_T_ego(t0_ns)[0]) @ self.city_T_ego(timestamp_ns)[0]
        sweep = self.sweep(timestamp_ns)
        xyz = sweep.points_ego.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        return np.column_stack([xyz, sweep.intensity.astype(np.float64)]) if intensity else xyz

    @cached_property
    def camera_frames(self) -> pl.DataFrame:
        return self._table(CAMERA_FRAMES_FILE)

    def image_path(self, relative: str) -> Path:
        return Path(self.meta.source_root) / relative

    @cached_property
    def boxes(self) -> pl.DataFrame:
        return self._table(BOXES_FILE)

    def box_matrices(self, frame: pl.DataFrame) -> np.ndarray:
        """city_T_box (M, 4, 4) of the rows of a BOXES frame."""
        return _pose_matrices(frame)

    @cached_property
    def map(self) -> pl.DataFrame:
        return self._table(MAP_FILE)

    def map_layer(self, layer: str) -> list[np.ndarray]:
        """The rings / polylines of one layer as (N, 2) city-frame xy arrays."""
        rows = self.map.filter(pl.col("layer") == layer)
        return [np.column_stack([x, y]) for x, y in zip(rows["x_m"].to_list(), rows["y_m"].to_list())]


class LogStore:
    """An ingest output folder: its manifest and one :class:`StoredLog` per log."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        manifest = self.root / STORE_MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{self.root} is not a complete log store (no {STORE_MANIFEST}; did ingest finish?)"
            )
        self.manifest = json.loads(manifest.read_text())

    @property
    def log_ids(self) -> list[str]:
        return list(self.manifest["logs"])

    def log(self, log_id: str) -> StoredLog:
        if log_id not in self.manifest["logs"]:
            raise KeyError(f"log {log_id} is not in the store {self.root}")
        return StoredLog(self.root / log_id)
