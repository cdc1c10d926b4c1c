"""What a dataset reader hands to ingest: one log, already in the store's frames and units.

A new dataset needs one class that satisfies :class:`LogSource`; ingest, validation, skip policies
and writing are shared (``gasp_core.data.ingest``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import Polygon

from gasp_core.data.errors import BadSweepError, InputError
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
    surface: np.ndarray | None = None  # (N,) uint8 surface class id per return (sidecar); None without labels


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
    def surface_classes(self) -> list[str] | None: ...  # names of SweepData.surface ids; None without labels


# Layout of the simulator's surface sidecar (written by gasp_core.sim.writers.sidecar; the names are repeated
# here because the data layer does not import the simulator).
SIDECAR_DIR = "gasp_sidecar"
SURFACE_CLASSES_FILE = "surface_classes.json"
SURFACE_DIR = "lidar_surface"
SURFACE_COLUMN = "surface"


class SurfaceSidecar:
    """One log's optional per-return surface classes: ``folder/surface_classes.json`` and
    ``folder/lidar_surface/<key>.feather`` (one uint8 column ``surface``, rows aligned with the sweep's points).

    Real data has no ``folder``: then :meth:`classes` and :meth:`read` give None. Once the folder exists,
    every sweep must have its file with one row per point, else :class:`BadSweepError` names that file.
    """

    def __init__(self, log_id: str, folder: Path) -> None:
        self.log_id = log_id
        self.folder = Path(folder)

    @property
    def present(self) -> bool:
        return self.folder.is_dir()

    @cached_property
    def _classes(self) -> list[str] | None:
        if not self.present:
            return None
        path = self.folder / SURFACE_CLASSES_FILE
        if not path.is_file():
            raise InputError(self.log_id, path, "surface class list is missing (the sidecar folder exists)")
        try:
            names = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(self.log_id, path, f"unreadable surface class list ({exc})") from exc
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(self.log_id, path, "surface class list is not a non-empty JSON list of names")
        return list(names)

    def classes(self) -> list[str] | None:
        """Class names indexed by surface id; None without a sidecar."""
        return self._classes

    def file(self, key: str) -> Path:
        return self.folder / SURFACE_DIR / f"{key}.feather"

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file()) if self.present else []

    def read(self, key: str, num_points: int) -> np.ndarray | None:
        """The surface ids of sweep ``key`` (``num_points`` returns); None without a sidecar. An empty sweep gets
        an empty array unread: its own defect is the one to report (ingest rejects empty sweeps)."""
        if not self.present:
            return None
        if num_points == 0:
            return np.zeros(0, np.uint8)
        path = self.file(key)
        if not path.is_file():
            raise BadSweepError(self.log_id, path, "surface sidecar file is missing")
        try:
            table = feather.read_table(path, columns=[SURFACE_COLUMN], memory_map=True)
        except Exception as exc:  # pyarrow raises several types for truncated or corrupt files
            raise BadSweepError(self.log_id, path, f"unreadable or truncated surface sidecar ({exc})") from exc
        if table.num_rows != num_points:
            raise BadSweepError(
                self.log_id,
                path,
                f"surface sidecar row count differs from its sweep ({table.num_rows} rows, {num_points} points)",
            )
        surface = table[SURFACE_COLUMN].to_numpy()
        if not np.issubdtype(surface.dtype, np.integer):
            raise BadSweepError(
                self.log_id, path, f"surface sidecar column is not integer ({table.schema.field(0).type})"
            )
        classes = self.classes()
        if len(surface) and (surface.min() < 0 or surface.max() >= len(classes)):
            raise BadSweepError(
                self.log_id,
                path,
                f"surface ids outside the class list "
                f"({int(surface.min())}..{int(surface.max())}, {len(classes)} classes)",
            )
        return surface.astype(np.uint8, copy=False)


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
        dup = any(
            len(s) == len(xy) and (np.abs(s - xy).max() < tol_m or np.abs(s[::-1] - xy).max() < tol_m) for s in seen
        )
        if not dup:
            seen.append(xy)
            out.append(el)
    return out


def overlaps(xy: np.ndarray, bounds_xy: tuple[float, float, float, float]) -> bool:
    """Whether the bounding box of ``xy`` (N, 2+) meets ``bounds_xy`` = (x0, y0, x1, y1)."""
    lo, hi = xy[:, :2].min(0), xy[:, :2].max(0)
    return bool(lo[0] <= bounds_xy[2] and hi[0] >= bounds_xy[0] and lo[1] <= bounds_xy[3] and hi[1] >= bounds_xy[1])
