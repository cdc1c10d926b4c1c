"""What a dataset reader hands to ingest: one log, already in the store's frames and units.

A new dataset needs one class that satisfies :class:`LogSource`; ingest, validation, skip policies
and writing are shared (``gasp_core.data.ingest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import Polygon

from gasp_core.data.schema import MapLayer


@dataclass
class SweepRef:
    timestamp_ns: int
    file: Path


@dataclass
class SweepData:
    points_ego: np.ndarray  # (N, 3) float32 or float64, ego frame at the sweep timestamp
    intensity: np.ndarray  # (N,)
    laser_number: np.ndarray  # (N,)
    lidar: np.ndarray  # (N,) index into the source's lidar names
    offset_ns: np.ndarray  # (N,)


@dataclass
class BoxRecords:
    """Cuboids of a whole log in the city frame (columns of the BOXES table before category mapping)."""

    timestamp_ns: np.ndarray  # (M,)
    track_id: list[str]
    category_raw: list[str]
    center_city: np.ndarray  # (M, 3)
    quat_wxyz_city: np.ndarray  # (M, 4)
    size_lwh_m: np.ndarray  # (M, 3)
    num_points: np.ndarray  # (M,)


@dataclass
class MapElement:
    layer: str
    element_id: str
    part: int
    xyz: np.ndarray  # (N, 3) city frame; z NaN where the map is 2D
    closed: bool
    mark_type: str = ""


class LogSource(Protocol):
    dataset: str
    log_id: str
    city: str
    source_root: Path
    lidars: list[str]
    point_time_offsets: bool
    pose_file: Path  # where poses come from, for error messages
    annotation_file: Path  # where box categories come from, for error messages

    def input_files(self) -> list[Path]: ...
    def poses(self) -> tuple[np.ndarray, np.ndarray]: ...  # (timestamps_ns (N,), city_T_ego (N, 4, 4))
    def calibration(self) -> pa.Table: ...  # schema.CALIBRATION
    def sweep_refs(self) -> list[SweepRef]: ...
    def read_sweep(self, ref: SweepRef) -> SweepData: ...  # raises BadSweepError
    def camera_frames(self) -> pa.Table: ...  # schema.CAMERA_FRAMES
    def box_records(self) -> BoxRecords: ...
    def map_elements(self, bounds_xy: tuple[float, float, float, float]) -> list[MapElement]: ...  # within the box


def polygon_elements(layer: str, element_id: str, polygon: Polygon, z: float = np.nan) -> list[MapElement]:
    """A shapely polygon as one exterior ring (part 0) and its holes (parts 1..), without the closing vertex."""
    rings = [polygon.exterior, *polygon.interiors]
    out = []
    for part, ring in enumerate(rings):
        xy = np.asarray(ring.coords)[:-1, :2]
        zz = np.asarray(ring.coords)[:-1, 2] if ring.has_z else np.full(len(xy), z)
        out.append(MapElement(layer, element_id, part, np.column_stack([xy, zz]), closed=True))
    return out


def road_boundaries(drivable: list[Polygon], z_lookup: tuple[np.ndarray, np.ndarray] | None = None) -> list[MapElement]:
    """Rings of the union of drivable-area polygons: the road's edge, wherever the source has no such layer.

    ``z_lookup`` = (vertices_xy, vertices_z) of the source polygons gives each ring vertex the height of
    the nearest source vertex (the union itself is 2D).
    """
    union = shapely.union_all([shapely.force_2d(p).buffer(0) for p in drivable]) if drivable else None
    if union is None or union.is_empty:
        return []
    parts = list(union.geoms) if hasattr(union, "geoms") else [union]
    out = []
    for k, poly in enumerate(parts):
        for el in polygon_elements(MapLayer.ROAD_BOUNDARY, f"road_boundary_{k}", poly):
            if z_lookup is not None and len(z_lookup[0]):
                _, idx = cKDTree(z_lookup[0]).query(el.xyz[:, :2])
                el.xyz[:, 2] = z_lookup[1][idx]
            out.append(el)
    return out


def dedupe_polylines(elements: list[MapElement], tol_m: float = 0.05) -> list[MapElement]:
    """Drop polylines that repeat an earlier one (either direction): neighbouring lanes share boundaries."""
    seen: list[np.ndarray] = []
    out = []
    for el in elements:
        xy = el.xyz[:, :2]
        dup = any(len(s) == len(xy) and (np.abs(s - xy).max() < tol_m or np.abs(s[::-1] - xy).max() < tol_m) for s in seen)
        if not dup:
            seen.append(xy)
            out.append(el)
    return out


def overlaps(xy: np.ndarray, bounds_xy: tuple[float, float, float, float]) -> bool:
    """Whether the bounding box of ``xy`` (N, 2+) meets ``bounds_xy`` = (x0, y0, x1, y1)."""
    lo, hi = xy[:, :2].min(0), xy[:, :2].max(0)
    return bool(lo[0] <= bounds_xy[2] and hi[0] >= bounds_xy[0] and lo[1] <= bounds_xy[3] and hi[1] >= bounds_xy[1])
