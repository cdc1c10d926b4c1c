"""Downstream labels from the log store, in the t0 ego frame: objects at any time, BEV forecasts, map rasters,
ego waypoints and semantic occupancy of 4D points."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import polars as pl

from gasp_core.data.schema import MapLayer, UnifiedCategory
from gasp_core.data.store import StoredLog
from gasp_core.geometry import quat_wxyz_to_rotation
from gasp_core.tasks.bev import BevGrid, boxes_mask, lines_mask, polygons_mask

FORECAST_CLASSES = (UnifiedCategory.VEHICLE, UnifiedCategory.PEDESTRIAN, UnifiedCategory.CYCLIST)
MAP_CLASSES = (MapLayer.DRIVABLE_AREA, MapLayer.PED_CROSSING, MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY)


@dataclass
class Objects:
    """Boxes at one time in the t0 frame."""

    track_id: list[str]
    category: np.ndarray  # (N,) UnifiedCategory values
    center: np.ndarray  # (N, 3)
    yaw: np.ndarray  # (N,)
    size_lwh: np.ndarray  # (N, 3)


class Tracks:
    """A log's boxes sorted by (track, time), for vectorised lookups of every track at one time."""

    def __init__(self, log: StoredLog) -> None:
        boxes = log.boxes.with_columns(pl.Series("yaw", _yaw(log.boxes))).sort(["track_id", "timestamp_ns"])
        track = boxes["track_id"].to_numpy()
        self.ts = boxes["timestamp_ns"].to_numpy().astype(np.int64)
        self.t_min = int(self.ts.min()) if len(self.ts) else 0
        new = np.r_[True, track[1:] != track[:-1]] if len(track) else np.zeros(0, bool)
        self.starts = np.flatnonzero(new)
        self.ends = np.r_[self.starts[1:], len(track)]
        code = np.cumsum(new) - 1
        self.keys = code * _KEY_STRIDE + (self.ts - self.t_min)
        self.track_ids = track[self.starts]
        self.category = np.array(
            [UnifiedCategory[c.upper()].value for c in boxes["category"].to_list()], dtype=np.int64
        )
        self.center = boxes.select("tx_m", "ty_m", "tz_m").to_numpy().astype(np.float64)
        self.yaw = boxes["yaw"].to_numpy()
        self.size = boxes.select("length_m", "width_m", "height_m").to_numpy().astype(np.float64)

    def at(self, time_ns: int, max_gap_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(track numbers, lower rows, upper rows, weights) of the tracks annotated around ``time_ns``."""
        q = np.arange(len(self.starts)) * _KEY_STRIDE + (int(time_ns) - self.t_min)
        k = np.searchsorted(self.keys, q)
        exact = (k >= self.starts) & (k < self.ends) & (self.keys[np.minimum(k, len(self.keys) - 1)] == q)
        km = np.maximum(k - 1, 0)
        kc = np.minimum(k, len(self.keys) - 1)
        between = ~exact & (k > self.starts) & (k < self.ends) & ((self.ts[kc] - self.ts[km]) <= max_gap_s * 1e9)
        tracks = np.flatnonzero(exact | between)
        lo = np.where(exact, k, km)[tracks]
        hi = np.where(exact, k, kc)[tracks]
        span = (self.ts[hi] - self.ts[lo]).astype(np.float64)
        w = np.where(span > 0, (time_ns - self.ts[lo]) / np.where(span > 0, span, 1.0), 0.0)
        return tracks, lo, hi, w


_KEY_STRIDE = 10**13  # > any log's duration in ns (2.7 hours): (track, time) pairs sort as one int64
_TRACKS: weakref.WeakKeyDictionary[StoredLog, Tracks] = weakref.WeakKeyDictionary()


def tracks_of(log: StoredLog) -> Tracks:
    if log not in _TRACKS:
        _TRACKS[log] = Tracks(log)
    return _TRACKS[log]


def objects_at(log: StoredLog, t0_ns: int, time_ns: int, max_gap_s: float = 0.6) -> Objects:
    """Every track annotated on both sides of ``time_ns`` (or exactly at it), linearly interpolated.

    Annotations more than ``max_gap_s`` apart are not bridged (the object may have left and come back).
    """
    tr = tracks_of(log)
    tracks, lo, hi, w = tr.at(time_ns, max_gap_s)
    if not len(tracks):
        return Objects([], np.zeros(0, int), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))
    t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
    dyaw = np.arctan2(np.sin(tr.yaw[hi] - tr.yaw[lo]), np.cos(tr.yaw[hi] - tr.yaw[lo]))
    centres = (1 - w)[:, None] * tr.center[lo] + w[:, None] * tr.center[hi]
    centres = centres @ t0_T_city[:3, :3].T + t0_T_city[:3, 3]
    yaw_t0 = tr.yaw[lo] + w * dyaw + np.arctan2(t0_T_city[1, 0], t0_T_city[0, 0])
    return Objects(list(tr.track_ids[tracks]), tr.category[lo], centres, yaw_t0, tr.size[lo])


def _yaw(boxes: pl.DataFrame) -> np.ndarray:
    rot = (
        quat_wxyz_to_rotation(boxes.select("qw", "qx", "qy", "qz").to_numpy()) if boxes.height else np.zeros((0, 3, 3))
    )
    return np.arctan2(rot[:, 1, 0], rot[:, 0, 0])


def forecast_labels(
    log: StoredLog,
    t0_ns: int,
    times_s: np.ndarray,
    grid: BevGrid,
    classes: tuple[UnifiedCategory, ...] = FORECAST_CLASSES,
) -> np.ndarray:
    """(T, C, H, W) bool: cells covered by an object of each class at each future time."""
    out = np.zeros((len(times_s), len(classes), *grid.shape), bool)
    for i, t in enumerate(times_s):
        obj = objects_at(log, t0_ns, t0_ns + int(round(t * 1e9)))
        for j, cls in enumerate(classes):
            m = obj.category == cls.value
            if m.any():
                out[i, j] = boxes_mask(grid, obj.center[m, :2], obj.yaw[m], obj.size_lwh[m, 0], obj.size_lwh[m, 1])
    return out


def map_labels(
    log: StoredLog, t0_ns: int, grid: BevGrid, line_width_m: float = 1.0, layers: tuple[str, ...] = MAP_CLASSES
) -> np.ndarray:
    """(L, H, W) bool: the HD map's layers around the ego at t0 (polygons filled, lines ``line_width_m`` wide)."""
    t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
    out = np.zeros((len(layers), *grid.shape), bool)
    for k, layer in enumerate(layers):
        rows = log.map.filter(pl.col("layer") == layer)
        shapes = [
            np.column_stack([x, y]) @ t0_T_city[:2, :2].T + t0_T_city[:2, 3] for x, y in zip(rows["x_m"], rows["y_m"])
        ]
        if layer in (MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY):
            closed = rows["closed"].to_list()
            out[k] = lines_mask(grid, [np.vstack([s, s[:1]]) if c else s for s, c in zip(shapes, closed)], line_width_m)
        else:
            ids, parts = rows["element_id"].to_list(), rows["part"].to_list()
            exteriors, holes = [], []
            for s, eid, part in zip(shapes, ids, parts):
                if part == 0:
                    exteriors.append(s)
                    holes.append([h for h, hid, hp in zip(shapes, ids, parts) if hid == eid and hp > 0])
            out[k] = polygons_mask(grid, exteriors, holes)
    return out


def ego_waypoints(log: StoredLog, t0_ns: int, times_s: np.ndarray) -> np.ndarray:
    """(K, 2) future ego positions (rear axle) in the t0 frame."""
    poses = np.linalg.inv(log.city_T_ego(t0_ns)[0]) @ log.city_T_ego(
        t0_ns + np.round(np.asarray(times_s) * 1e9).astype(np.int64)
    )
    return poses[:, :2, 3]


def semantic_occupancy(log: StoredLog, t0_ns: int, xyzt: np.ndarray, max_gap_s: float = 0.6) -> np.ndarray:
    """(N,) class of each 4D query: 1 + UnifiedCategory inside an object's box at the query's own time, else 0.

    Boxes are those of :func:`objects_at` at each query's time (to the nanosecond). Between two consecutive
    annotation times the set of tracks and their bracketing annotations is fixed, so each such interval takes one
    lookup and the interpolation is done per query.
    """
    tr = tracks_of(log)
    label = np.zeros(len(xyzt), np.int64)
    if not len(tr.ts) or not len(xyzt):
        return label
    t_ns = t0_ns + np.round(np.asarray(xyzt[:, 3], np.float64) * 1e9).astype(np.int64)
    ann = np.unique(tr.ts)
    pos = np.searchsorted(ann, t_ns)
    exact = (pos < len(ann)) & (ann[np.minimum(pos, len(ann) - 1)] == t_ns)
    group = np.where(exact, 2 * pos, 2 * pos - 1)  # even: at annotation time pos; odd: between pos - 1 and pos
    t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
    yaw_offset = np.arctan2(t0_T_city[1, 0], t0_T_city[0, 0])
    for g in np.unique(group):
        m = np.flatnonzero(group == g)
        tracks, lo, hi, _ = tr.at(int(t_ns[m[0]]), max_gap_s)
        if not len(tracks):
            continue
        span = (tr.ts[hi] - tr.ts[lo]).astype(np.float64)
        w = np.where(span > 0, (t_ns[m, None] - tr.ts[lo]) / np.where(span > 0, span, 1.0), 0.0)  # (M, N)
        centre = (1 - w)[..., None] * tr.center[lo] + w[..., None] * tr.center[hi]
        centre = centre @ t0_T_city[:3, :3].T + t0_T_city[:3, 3]
        dyaw = np.arctan2(np.sin(tr.yaw[hi] - tr.yaw[lo]), np.cos(tr.yaw[hi] - tr.yaw[lo]))
        yaw = tr.yaw[lo] + w * dyaw + yaw_offset
        d = xyzt[m, None, :3] - centre
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
        size = tr.size[lo]
        inside = (np.abs(lx) <= size[:, 0] / 2) & (np.abs(ly) <= size[:, 1] / 2) & (np.abs(d[..., 2]) <= size[:, 2] / 2)
        hit = inside.any(1)
        last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)  # the last containing box wins
        label[m[hit]] = tr.category[lo][last[hit]] + 1
    return label
