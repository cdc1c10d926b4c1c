"""SE(3) helpers on 4x4 matrices.

Naming follows ``a_T_b``: the transform that maps points expressed in frame ``b`` into frame ``a``.
Quaternions are scalar-first ``(w, x, y, z)``, as in both AV2 and nuScenes.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def yaw_rotation(yaw_rad: float | np.ndarray) -> np.ndarray:
    """Rotation matrices about +z; shape (3, 3) or (N, 3, 3)."""
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.zeros(yaw.shape + (3, 3))
    rot[..., 0, 0], rot[..., 0, 1] = c, -s
    rot[..., 1, 0], rot[..., 1, 1] = s, c
    rot[..., 2, 2] = 1.0
    return rot


def make_se3(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Stack rotation(s) (..., 3, 3) and translation(s) (..., 3) into (..., 4, 4) matrices."""
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    out = np.zeros(rotation.shape[:-2] + (4, 4))
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def transform_points(a_T_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map points (N, 3) from frame b into frame a."""
    return points_b @ a_T_b[:3, :3].T + a_T_b[:3, 3]


def quat_wxyz_to_rotation(quat_wxyz: np.ndarray) -> np.ndarray:
    """Quaternion(s) (..., 4) scalar-first to rotation matrices (..., 3, 3)."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    return Rotation.from_quat(q[..., [1, 2, 3, 0]]).as_matrix()


def rotation_to_quat_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) to scalar-first quaternions (..., 4) with w >= 0."""
    q = Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_quat()[..., [3, 0, 1, 2]]
    return np.where(q[..., :1] < 0, -q, q)


def quat_wxyz_from_yaw(yaw_rad: float | np.ndarray) -> np.ndarray:
    """Scalar-first quaternion(s) of a rotation about +z."""
    half = 0.5 * np.asarray(yaw_rad, dtype=np.float64)
    zeros = np.zeros_like(half)
    return np.stack([np.cos(half), zeros, zeros, np.sin(half)], axis=-1)


class PoseInterpolator:
    """Poses (N, 4, 4) known at increasing ``times``, evaluated at any times within their range.

    Translation is interpolated linearly and rotation by slerp (built once); times that hit a known
    pose return it exactly. Queries outside the known range raise, since extrapolated poses are a
    silent source of wrong labels.
    """

    def __init__(self, times: np.ndarray, poses: np.ndarray) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.poses = np.asarray(poses, dtype=np.float64)
        self._slerp = Slerp(self.times, Rotation.from_matrix(self.poses[:, :3, :3])) if len(self.times) > 1 else None

    def __call__(self, query_times: np.ndarray) -> np.ndarray:
        q = np.atleast_1d(np.asarray(query_times, dtype=np.float64))
        times = self.times
        if q.min() < times[0] - 1e-9 or q.max() > times[-1] + 1e-9:
            raise ValueError(
                f"pose query times [{q.min()}, {q.max()}] fall outside the known range [{times[0]}, {times[-1]}]"
            )
        q = np.clip(q, times[0], times[-1])
        idx = np.clip(np.searchsorted(times, q), 0, len(times) - 1)
        exact = times[idx] == q
        out = np.empty((len(q), 4, 4))
        out[exact] = self.poses[idx[exact]]
        rest = ~exact
        if rest.any():
            rot = self._slerp(q[rest]).as_matrix()
            trans = np.stack([np.interp(q[rest], times, self.poses[:, i, 3]) for i in range(3)], axis=-1)
            out[rest] = make_se3(rot, trans)
        return out
