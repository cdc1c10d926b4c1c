"""Read an Argoverse 2 sensor log through the ``av2`` API: sweeps, poses, boxes, cameras, map."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from av2.datasets.sensor.av2_sensor_dataloader import AV2SensorDataLoader
from av2.map.map_api import ArgoverseStaticMap
from av2.structures.sweep import Sweep
from av2.utils.io import read_feather

from gasp_core.geometry import quat_wxyz_to_rotation


@dataclass
class Boxes:
    """Cuboids at one timestamp, in the frame named by the producer (AV2: ego frame)."""

    track_id: np.ndarray  # (N,) str
    category: np.ndarray  # (N,) str
    center: np.ndarray  # (N, 3)
    size_lwh: np.ndarray  # (N, 3)
    rotation: np.ndarray  # (N, 3, 3)
    num_interior_pts: np.ndarray  # (N,)


@dataclass
class LidarPoints:
    points_ego: np.ndarray  # (N, 3) float64, ego frame at the sweep timestamp
    intensity: np.ndarray  # (N,)
    laser_number: np.ndarray  # (N,)
    offset_ns: np.ndarray  # (N,) time of each return after the sweep timestamp


class AV2LogReader:
    """One AV2 log (``split_dir/log_id``), read with ``AV2SensorDataLoader`` and ``ArgoverseStaticMap``."""

    def __init__(self, split_dir: Path, log_id: str) -> None:
        self.split_dir = Path(split_dir)
        self.log_id = log_id
        self.log_dir = self.split_dir / log_id
        if not self.log_dir.is_dir():
            raise FileNotFoundError(f"AV2 log folder {self.log_dir} does not exist")
        self.loader = AV2SensorDataLoader(data_dir=self.split_dir, labels_dir=self.split_dir)

    @staticmethod
    def log_ids(split_dir: Path) -> list[str]:
        return sorted(p.name for p in Path(split_dir).iterdir() if (p / "city_SE3_egovehicle.feather").is_file())

    @cached_property
    def lidar_timestamps_ns(self) -> list[int]:
        return [int(t) for t in self.loader.get_ordered_log_lidar_timestamps(self.log_id)]

    def sweep(self, timestamp_ns: int) -> LidarPoints:
        sweep = Sweep.from_feather(self.loader.get_lidar_fpath(self.log_id, timestamp_ns))
        return LidarPoints(sweep.xyz.astype(np.float64), sweep.intensity, sweep.laser_number, sweep.offset_ns)

    def city_T_ego(self, timestamp_ns: int) -> np.ndarray:
        return self.loader.get_city_SE3_ego(self.log_id, timestamp_ns).transform_matrix

    @cached_property
    def pose_table(self):
        return read_feather(self.log_dir / "city_SE3_egovehicle.feather")

    @cached_property
    def annotations(self):
        """The log's ``annotations.feather`` as a pandas frame (as av2 reads it)."""
        return read_feather(self.log_dir / "annotations.feather")

    def boxes(self, timestamp_ns: int) -> Boxes:
        """Annotated cuboids at a lidar timestamp, in the ego frame (AV2's convention)."""
        rows = self.annotations[self.annotations["timestamp_ns"] == timestamp_ns]
        quat = rows[["qw", "qx", "qy", "qz"]].to_numpy(dtype=np.float64).reshape(-1, 4)
        return Boxes(
            track_id=rows["track_uuid"].to_numpy(dtype=str),
            category=rows["category"].to_numpy(dtype=str),
            center=rows[["tx_m", "ty_m", "tz_m"]].to_numpy(dtype=np.float64).reshape(-1, 3),
            size_lwh=rows[["length_m", "width_m", "height_m"]].to_numpy(dtype=np.float64).reshape(-1, 3),
            rotation=quat_wxyz_to_rotation(quat) if len(quat) else np.zeros((0, 3, 3)),
            num_interior_pts=rows["num_interior_pts"].to_numpy(dtype=np.int64),
        )

    def cuboids(self, timestamp_ns: int):
        """The av2 ``CuboidList`` itself, for geometry such as interior points."""
        return self.loader.get_labels_at_lidar_timestamp(self.log_id, timestamp_ns)

    def camera_names(self) -> list[str]:
        cam_dir = self.log_dir / "sensors" / "cameras"
        return sorted(p.name for p in cam_dir.iterdir()) if cam_dir.is_dir() else []

    def pinhole_camera(self, camera: str):
        return self.loader.get_log_pinhole_camera(self.log_id, camera)

    def camera_timestamps_ns(self, camera: str) -> list[int]:
        return sorted(int(p.stem) for p in self.loader.get_ordered_log_cam_fpaths(self.log_id, camera))

    @cached_property
    def static_map(self) -> ArgoverseStaticMap:
        return ArgoverseStaticMap.from_map_dir(self.log_dir / "map", build_raster=False)
