"""Read an Argoverse 2 sensor log through the ``av2`` API: sweeps, poses, boxes, cameras, map.

:class:`AV2LogReader` is also the AV2 :class:`~gasp_core.data.source.LogSource` for ingest: every
file is read with av2's own readers (``av2.utils.io.read_feather``, ``ArgoverseStaticMap``), and
anything missing, truncated or malformed raises an :class:`InputError` naming the log and the file.
Simulated logs may carry per-return surface classes in ``<log_dir>/gasp_sidecar/`` (a
:class:`~gasp_core.data.source.SurfaceSidecar` keyed by the sweep's timestamp); real logs have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
from av2.map.map_api import ArgoverseStaticMap
from av2.utils.io import read_feather
from shapely.geometry import Polygon

from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.schema import CALIBRATION, CAMERA_FRAMES, MapLayer
from gasp_core.data.source import (
    SIDECAR_DIR,
    BoxRecords,
    MapElement,
    SurfaceSidecar,
    SweepData,
    SweepRef,
    dedupe_polylines,
    overlaps,
    road_boundaries,
)
from gasp_core.geometry import make_se3, quat_wxyz_to_rotation, rotation_to_quat_wxyz

LIDARS = ["up_lidar", "down_lidar"]
LASERS_PER_LIDAR = 32  # AV2: laser_number 0-31 fire from up_lidar, 32-63 from down_lidar
POSE_COLUMNS = ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
SWEEP_COLUMNS = ("x", "y", "z", "intensity", "laser_number", "offset_ns")
ANNOTATION_COLUMNS = (
    "timestamp_ns",
    "track_uuid",
    "category",
    "length_m",
    "width_m",
    "height_m",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx_m",
    "ty_m",
    "tz_m",
    "num_interior_pts",
)
NO_MARK = {"NONE", "UNKNOWN"}


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
    """One AV2 log (``split_dir/log_id``)."""

    dataset = "av2"
    lidars = LIDARS
    point_time_offsets = True

    def __init__(self, split_dir: Path, log_id: str) -> None:
        self.split_dir = Path(split_dir)
        self.source_root = self.split_dir
        self.log_id = log_id
        self.log_dir = self.split_dir / log_id
        self.pose_file = self.log_dir / "city_SE3_egovehicle.feather"
        self.annotation_file = self.log_dir / "annotations.feather"
        self.sidecar = SurfaceSidecar(log_id, self.log_dir / SIDECAR_DIR)
        if not self.log_dir.is_dir():
            raise FileNotFoundError(f"AV2 log folder {self.log_dir} does not exist")

    @staticmethod
    def log_ids(split_dir: Path) -> list[str]:
        split_dir = Path(split_dir)
        if not split_dir.is_dir():
            raise FileNotFoundError(f"AV2 split folder {split_dir} does not exist")
        return sorted(p.name for p in split_dir.iterdir() if (p / "sensors" / "lidar").is_dir())

    @cached_property
    def loader(self):
        """av2's own ``AV2SensorDataLoader`` over the split (indexes every log in it; used for camera models
        and checks, imported lazily: it pulls in matplotlib)."""
        from av2.datasets.sensor.av2_sensor_dataloader import AV2SensorDataLoader

        return AV2SensorDataLoader(data_dir=self.split_dir, labels_dir=self.split_dir)

    def _table(self, rel: str, columns: tuple[str, ...]):
        path = self.log_dir / rel
        if not path.is_file():
            raise InputError(self.log_id, path, "file is missing")
        try:
            frame = read_feather(path)
        except Exception as exc:  # pyarrow raises several types for truncated or corrupt files
            raise InputError(self.log_id, path, f"unreadable or truncated feather file ({exc})") from exc
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(self.log_id, path, f"missing column(s) {missing}; has {list(frame.columns)}")
        return frame

    # --- lidar -----------------------------------------------------------------------------
    @cached_property
    def lidar_timestamps_ns(self) -> list[int]:
        return [r.timestamp_ns for r in self.sweep_refs()]

    def sweep_refs(self) -> list[SweepRef]:
        lidar_dir = self.log_dir / "sensors" / "lidar"
        if not lidar_dir.is_dir():
            raise InputError(self.log_id, lidar_dir, "lidar folder is missing")
        refs = []
        for path in lidar_dir.glob("*.feather"):
            if not path.stem.isdigit():
                raise InputError(self.log_id, path, "sweep file name is not a nanosecond timestamp")
            refs.append(SweepRef(int(path.stem), path))
        return sorted(refs, key=lambda r: r.timestamp_ns)

    def read_sweep(self, ref: SweepRef) -> SweepData:
        if not ref.file.is_file():
            raise BadSweepError(self.log_id, ref.file, "sweep file is missing")
        try:  # pyarrow directly, not av2's pandas wrapper: same columns as av2.structures.sweep.Sweep, 10x faster
            table = feather.read_table(ref.file, columns=list(SWEEP_COLUMNS), memory_map=True)
        except Exception as exc:
            raise BadSweepError(self.log_id, ref.file, f"unreadable or truncated sweep ({exc})") from exc
        col = {name: table[name].to_numpy() for name in SWEEP_COLUMNS}
        return SweepData(
            points_ego=np.column_stack([col["x"], col["y"], col["z"]]).astype(np.float32, copy=False),
            intensity=col["intensity"],
            laser_number=col["laser_number"],
            lidar=(col["laser_number"] >= LASERS_PER_LIDAR).astype(np.uint8),
            offset_ns=col["offset_ns"],
            surface=self.sidecar.read(ref.file.stem, table.num_rows),
        )

    def surface_classes(self) -> list[str] | None:
        """Names of the sidecar's surface ids; None for logs without one (real AV2)."""
        return self.sidecar.classes()

    def sweep(self, timestamp_ns: int) -> LidarPoints:
        data = self.read_sweep(SweepRef(timestamp_ns, self.log_dir / "sensors" / "lidar" / f"{timestamp_ns}.feather"))
        return LidarPoints(data.points_ego.astype(np.float64), data.intensity, data.laser_number, data.offset_ns)

    # --- poses and calibration ---------------------------------------------------------------
    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        table = self._table("city_SE3_egovehicle.feather", POSE_COLUMNS)
        q = table[["qw", "qx", "qy", "qz"]].to_numpy(dtype=np.float64)
        t = table[["tx_m", "ty_m", "tz_m"]].to_numpy(dtype=np.float64)
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            raise InputError(self.log_id, self.log_dir / "city_SE3_egovehicle.feather", "NaN or inf in poses")
        return table["timestamp_ns"].to_numpy(dtype=np.int64), make_se3(quat_wxyz_to_rotation(q), t)

    def city_T_ego(self, timestamp_ns: int) -> np.ndarray:
        times, poses = self.pose_arrays
        i = np.searchsorted(times, timestamp_ns)
        if i >= len(times) or times[i] != timestamp_ns:
            raise KeyError(f"log {self.log_id}: no pose at {timestamp_ns} in city_SE3_egovehicle.feather")
        return poses[i]

    @cached_property
    def pose_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        times, poses = self.poses()
        order = np.argsort(times, kind="stable")
        return times[order], poses[order]

    def calibration(self) -> pa.Table:
        extr = self._table(
            "calibration/egovehicle_SE3_sensor.feather", ("sensor_name", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
        )
        intr = self._table(
            "calibration/intrinsics.feather",
            ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "width_px", "height_px"),
        )
        extr_by_name = {str(r.sensor_name): r for r in extr.itertuples()}
        intr_by_name = {str(r.sensor_name): r for r in intr.itertuples()}
        with_images = self.camera_names()
        cameras = sorted(set(with_images) | {n for n in intr_by_name if n in extr_by_name})
        needed = [(name, "lidar") for name in LIDARS] + [(name, "camera") for name in cameras]
        rows = {name: [] for name in CALIBRATION.names}
        for name, kind in needed:
            if name not in extr_by_name:
                raise InputError(
                    self.log_id,
                    self.log_dir / "calibration/egovehicle_SE3_sensor.feather",
                    f"no extrinsics for sensor {name!r}",
                )
            e = extr_by_name[name]
            i = intr_by_name.get(name)
            if kind == "camera" and i is None:
                raise InputError(
                    self.log_id, self.log_dir / "calibration/intrinsics.feather", f"no intrinsics for camera {name!r}"
                )
            values = {
                "sensor_name": name,
                "kind": kind,
                "qw": e.qw,
                "qx": e.qx,
                "qy": e.qy,
                "qz": e.qz,
                "tx_m": e.tx_m,
                "ty_m": e.ty_m,
                "tz_m": e.tz_m,
            }
            for key in ("fx_px", "fy_px", "cx_px", "cy_px", "k1", "k2", "k3", "width_px", "height_px"):
                values[key] = None if i is None else getattr(i, key, 0.0)
            for key, value in values.items():
                rows[key].append(value)
        table = pa.table(rows, schema=CALIBRATION)
        numeric = np.column_stack(
            [table[c].to_numpy(zero_copy_only=False) for c in ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")]
        )
        if not np.isfinite(numeric.astype(np.float64)).all():
            raise InputError(
                self.log_id, self.log_dir / "calibration/egovehicle_SE3_sensor.feather", "NaN or inf in extrinsics"
            )
        return table

    # --- cameras --------------------------------------------------------------------------
    def camera_names(self) -> list[str]:
        cam_dir = self.log_dir / "sensors" / "cameras"
        return sorted(p.name for p in cam_dir.iterdir() if p.is_dir()) if cam_dir.is_dir() else []

    def pinhole_camera(self, camera: str):
        return self.loader.get_log_pinhole_camera(self.log_id, camera)

    def camera_timestamps_ns(self, camera: str) -> list[int]:
        return sorted(int(p.stem) for p in (self.log_dir / "sensors" / "cameras" / camera).glob("*.jpg"))

    def camera_frames(self) -> pa.Table:
        rows = {"camera": [], "timestamp_ns": [], "image_path": []}
        for cam in self.camera_names():
            for ts in self.camera_timestamps_ns(cam):
                rows["camera"].append(cam)
                rows["timestamp_ns"].append(ts)
                rows["image_path"].append(f"{self.log_id}/sensors/cameras/{cam}/{ts}.jpg")
        return pa.table(rows, schema=CAMERA_FRAMES)

    # --- annotations ------------------------------------------------------------------------
    @cached_property
    def annotations(self):
        """The log's ``annotations.feather`` as a pandas frame (as av2 reads it)."""
        return self._table("annotations.feather", ANNOTATION_COLUMNS)

    def boxes(self, timestamp_ns: int) -> Boxes:
        """The cuboids at a lidar timestamp, in the ego frame (AV2's convention)."""
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

    def box_records(self) -> BoxRecords:
        """Every cuboid of the log, in the city frame."""
        ann = self.annotations
        path = self.log_dir / "annotations.feather"
        ts = ann["timestamp_ns"].to_numpy(dtype=np.int64)
        center = ann[["tx_m", "ty_m", "tz_m"]].to_numpy(dtype=np.float64).reshape(-1, 3)
        quat = ann[["qw", "qx", "qy", "qz"]].to_numpy(dtype=np.float64).reshape(-1, 4)
        size = ann[["length_m", "width_m", "height_m"]].to_numpy(dtype=np.float64).reshape(-1, 3)
        if not (np.isfinite(center).all() and np.isfinite(quat).all() and np.isfinite(size).all()):
            raise InputError(self.log_id, path, "NaN or inf in box centres, rotations or sizes")
        times, poses = self.pose_arrays
        idx = np.clip(np.searchsorted(times, ts), 0, max(len(times) - 1, 0))
        missing = times[idx] != ts if len(times) else np.ones(len(ts), bool)
        if missing.any():
            raise InputError(
                self.log_id,
                path,
                f"{int(missing.sum())} boxes at timestamps without an ego pose (first {int(ts[missing][0])})",
            )
        city_T_ego = poses[idx]
        center_city = np.einsum("nij,nj->ni", city_T_ego[:, :3, :3], center) + city_T_ego[:, :3, 3]
        rot_city = city_T_ego[:, :3, :3] @ (quat_wxyz_to_rotation(quat) if len(quat) else np.zeros((0, 3, 3)))
        return BoxRecords(
            timestamp_ns=ts,
            track_id=ann["track_uuid"].astype(str).tolist(),
            category_raw=ann["category"].astype(str).tolist(),
            center_city=center_city,
            quat_wxyz_city=rotation_to_quat_wxyz(rot_city) if len(ts) else np.zeros((0, 4)),
            size_lwh_m=size,
            num_points=ann["num_interior_pts"].to_numpy(dtype=np.int64),
        )

    def cuboids(self, timestamp_ns: int):
        """The av2 ``CuboidList`` itself, for geometry such as interior points."""
        return self.loader.get_labels_at_lidar_timestamp(self.log_id, timestamp_ns)

    # --- map --------------------------------------------------------------------------------
    @cached_property
    def map_json(self) -> Path:
        found = sorted((self.log_dir / "map").glob("log_map_archive_*.json"))
        if not found:
            raise InputError(self.log_id, self.log_dir / "map", "no log_map_archive_*.json (vector map) found")
        return found[0]

    @cached_property
    def city(self) -> str:
        # log_map_archive_<log_id>____<CITY>_city_<id>.json
        name = self.map_json.stem
        return name.split("____")[-1].split("_city_")[0] if "____" in name else "unknown"

    @cached_property
    def static_map(self) -> ArgoverseStaticMap:
        try:
            return ArgoverseStaticMap.from_json(self.map_json)
        except Exception as exc:
            raise InputError(self.log_id, self.map_json, f"unreadable vector map ({exc})") from exc

    def map_elements(self, bounds_xy: tuple[float, float, float, float]) -> list[MapElement]:
        m = self.static_map
        dividers = []
        for seg in sorted(m.vector_lane_segments.values(), key=lambda s: s.id):
            if seg.is_intersection or not overlaps(seg.polygon_boundary, bounds_xy):
                continue
            for side, bound, mark in (
                ("left", seg.left_lane_boundary, seg.left_mark_type),
                ("right", seg.right_lane_boundary, seg.right_mark_type),
            ):
                if mark.value not in NO_MARK:
                    dividers.append(
                        MapElement(
                            MapLayer.LANE_DIVIDER,
                            f"{seg.id}_{side}",
                            0,
                            bound.xyz.astype(np.float64),
                            closed=False,
                            mark_type=mark.value,
                        )
                    )
        crossings = [
            MapElement(MapLayer.PED_CROSSING, str(pc.id), 0, _open_ring(pc.polygon).astype(np.float64), closed=True)
            for pc in sorted(m.vector_pedestrian_crossings.values(), key=lambda p: p.id)
            if overlaps(pc.polygon, bounds_xy)
        ]
        areas = sorted((a for a in m.vector_drivable_areas.values() if overlaps(a.xyz, bounds_xy)), key=lambda a: a.id)
        drivable = [
            MapElement(MapLayer.DRIVABLE_AREA, str(a.id), 0, _open_ring(a.xyz).astype(np.float64), closed=True)
            for a in areas
        ]
        polys = [Polygon(el.xyz[:, :2]) for el in drivable if len(el.xyz) >= 3]
        verts = np.concatenate([el.xyz for el in drivable]) if drivable else np.zeros((0, 3))
        return dedupe_polylines(dividers) + road_boundaries(polys, (verts[:, :2], verts[:, 2])) + crossings + drivable

    # --- inputs -----------------------------------------------------------------------------
    def input_files(self) -> list[Path]:
        return sorted(p for p in self.log_dir.rglob("*") if p.is_file())


def _open_ring(xyz: np.ndarray) -> np.ndarray:
    """Drop a repeated closing vertex."""
    return xyz[:-1] if len(xyz) > 1 and np.allclose(xyz[0], xyz[-1]) else xyz
