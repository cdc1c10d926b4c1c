"""What the tasks' labels share: the log's objects at any time, in the t0 ego frame (each task's labels builder is
in its package, ``gasp_core.tasks.<task>.labels``)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import polars as pl

from gasp_core.data.schema import UnifiedCategory
from gasp_core.data.store import StoredLog
from gasp_core.geometry import quat_wxyz_to_rotation


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
