"""The normalized log store: one folder per log, the same for every source dataset.

Layout of ``<store>/<log_id>/`` (all tables Arrow; frames and units in the column names)::

    meta.json          LogMeta: source, city, ego dimensions, lidar names, counts, skipped inputs.
                       Written last: a log folder is complete iff meta.json exists in it.
    poses.parquet      POSES: city_T_ego at every timestamp the source has (AV2: ~100 Hz; nuScenes:
                       every sample_data), sorted by timestamp_ns, strictly increasing.
    calibration.parquet CALIBRATION: ego_T_sensor for each lidar and camera; pinhole intrinsics for
                       cameras (null for lidars).
    sweeps.parquet     SWEEP_INDEX: one row per lidar sweep kept (timestamp_ns, num_points, file).
    sweeps/<timestamp_ns>.arrow  SWEEP_POINTS: Arrow IPC, one file per sweep; logs with surface labels
                       (simulated ones) add a last column SWEEP_SURFACE_FIELD to every sweep,
                       its ids naming LogMeta.surface_classes.
    cameras.parquet    CAMERA_FRAMES: camera, timestamp_ns, image_path (relative to meta.source_root).
    boxes.parquet      BOXES: annotated cuboids in the city frame, with track id and categories.
    map.parquet        MAP: polylines and polygon rings in the city frame, one row per ring.

Frames: ``points_ego`` are in the ego frame (rear axle, x forward, z up) at the sweep's timestamp,
as AV2 stores them; each point was measured at ``timestamp_ns + offset_ns`` from the origin of its
lidar (``lidar`` indexes ``LogMeta.lidars``; its ``ego_T_sensor`` is in calibration). Sources
without per-point times (nuScenes) store ``offset_ns = 0`` and ``LogMeta.point_time_offsets = False``.
Poses and boxes are in the city frame; quaternions are scalar-first (qw, qx, qy, qz).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum

import pyarrow as pa

SCHEMA_VERSION = 1

META_FILE = "meta.json"
POSES_FILE = "poses.parquet"
CALIBRATION_FILE = "calibration.parquet"
SWEEP_INDEX_FILE = "sweeps.parquet"
SWEEPS_DIR = "sweeps"
CAMERA_FRAMES_FILE = "cameras.parquet"
BOXES_FILE = "boxes.parquet"
MAP_FILE = "map.parquet"
STORE_MANIFEST = "manifest.json"

_POSE_COLUMNS = [
    ("qw", pa.float64()),
    ("qx", pa.float64()),
    ("qy", pa.float64()),
    ("qz", pa.float64()),
    ("tx_m", pa.float64()),
    ("ty_m", pa.float64()),
    ("tz_m", pa.float64()),
]

POSES = pa.schema([("timestamp_ns", pa.int64()), *_POSE_COLUMNS])

CALIBRATION = pa.schema(
    [
        ("sensor_name", pa.string()),
        ("kind", pa.string()),  # "lidar" | "camera"
        *_POSE_COLUMNS,  # ego_T_sensor; cameras use OpenCV axes (x right, y down, z forward)
        ("fx_px", pa.float64()),
        ("fy_px", pa.float64()),
        ("cx_px", pa.float64()),
        ("cy_px", pa.float64()),
        ("k1", pa.float64()),
        ("k2", pa.float64()),
        ("k3", pa.float64()),
        ("width_px", pa.int32()),
        ("height_px", pa.int32()),
    ]
)

SWEEP_INDEX = pa.schema(
    [
        ("timestamp_ns", pa.int64()),
        ("num_points", pa.int64()),
        ("file", pa.string()),  # relative to the log folder
    ]
)

SWEEP_POINTS = pa.schema(
    [
        ("x_m", pa.float32()),
        ("y_m", pa.float32()),
        ("z_m", pa.float32()),  # ego frame at the sweep timestamp
        ("intensity", pa.float32()),
        ("laser_number", pa.int16()),  # laser / ring index within its lidar's scan pattern
        ("lidar", pa.uint8()),  # index into LogMeta.lidars
        ("offset_ns", pa.int32()),  # firing time after the sweep timestamp
    ]
)

# Surface class id of each return (index into LogMeta.surface_classes), only in logs that have labels.
SWEEP_SURFACE_FIELD = pa.field("surface", pa.uint8())
SWEEP_POINTS_WITH_SURFACE = SWEEP_POINTS.append(SWEEP_SURFACE_FIELD)

CAMERA_FRAMES = pa.schema(
    [
        ("camera", pa.string()),
        ("timestamp_ns", pa.int64()),
        ("image_path", pa.string()),  # relative to LogMeta.source_root
    ]
)

BOXES = pa.schema(
    [
        ("timestamp_ns", pa.int64()),
        ("track_id", pa.string()),
        ("category_raw", pa.string()),  # the source dataset's category name
        ("category", pa.string()),  # a UnifiedCategory name, lower case
        ("tx_m", pa.float64()),
        ("ty_m", pa.float64()),
        ("tz_m", pa.float64()),  # box centre, city frame
        ("qw", pa.float64()),
        ("qx", pa.float64()),
        ("qy", pa.float64()),
        ("qz", pa.float64()),  # city_R_box
        ("length_m", pa.float64()),
        ("width_m", pa.float64()),
        ("height_m", pa.float64()),
        ("num_points", pa.int64()),  # lidar returns inside the box, as the source counts them (-1 unknown)
    ]
)

MAP = pa.schema(
    [
        ("layer", pa.string()),  # a MapLayer value
        ("element_id", pa.string()),
        ("part", pa.int32()),  # 0: the element's exterior ring or its polyline; k > 0: the k-th hole
        ("mark_type", pa.string()),  # lane dividers: an av2 LaneMarkType value; "" elsewhere
        ("closed", pa.bool_()),  # True for polygon rings (first vertex not repeated)
        ("x_m", pa.list_(pa.float64())),
        ("y_m", pa.list_(pa.float64())),
        ("z_m", pa.list_(pa.float64())),  # null where the source map is 2D (nuScenes)
    ]
)


class UnifiedCategory(IntEnum):
    """Object classes shared by every dataset (downstream tasks index arrays with these)."""

    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    OTHER = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class MapLayer:
    """Values of the ``layer`` column."""

    LANE_DIVIDER = "lane_divider"  # painted lines between lanes, with mark_type
    ROAD_BOUNDARY = "road_boundary"  # rings of the union of drivable areas
    PED_CROSSING = "ped_crossing"  # crosswalk polygons
    DRIVABLE_AREA = "drivable_area"  # drivable-area polygons as the source defines them
    ALL = (LANE_DIVIDER, ROAD_BOUNDARY, PED_CROSSING, DRIVABLE_AREA)


@dataclass
class EgoDims:
    """The ego vehicle's box; the ego frame's origin is the rear axle on the ground."""

    length_m: float
    width_m: float
    height_m: float
    rear_overhang_m: float
    """Distance from the rear bumper to the rear axle: the box centre is at x = length/2 - rear_overhang."""


# The recording vehicles' published dimensions (AV2: Ford Fusion Hybrid; nuScenes: Renault Zoe).
# Neither dataset ships them in its files; a user can override them in the ingest params.
DEFAULT_EGO_DIMS = {
    "av2": EgoDims(length_m=4.87, width_m=1.85, height_m=1.48, rear_overhang_m=1.03),
    "nuscenes": EgoDims(length_m=4.08, width_m=1.73, height_m=1.56, rear_overhang_m=0.68),
}


@dataclass
class SkippedInput:
    """An input the stage left out under a skip policy, and why."""

    file: str
    reason: str
    timestamp_ns: int | None = None


@dataclass
class LogMeta:
    log_id: str
    dataset: str  # "av2" | "nuscenes"
    city: str
    source_root: str  # the split / dataroot folder that image paths are relative to
    ego: EgoDims
    lidars: list[str]
    point_time_offsets: bool
    num_sweeps: int
    num_points: int
    num_poses: int
    num_camera_frames: int
    num_boxes: int
    num_map_elements: int
    fingerprint: str  # of the inputs and the ingest config; a rerun skips the log when it matches
    skipped: list[SkippedInput] = field(default_factory=list)
    unknown_categories: dict[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    surface_classes: list[str] | None = None  # names of the sweeps' surface ids; None when the log has no labels

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LogMeta:
        data = dict(data)
        data["ego"] = EgoDims(**data["ego"])
        data["skipped"] = [SkippedInput(**s) for s in data.get("skipped", [])]
        return cls(**data)
