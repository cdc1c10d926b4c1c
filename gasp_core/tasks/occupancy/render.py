"""Depth rendering through an occupancy field: where each stored future ray first crosses P(occupied) = 0.5."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import SceneConfig
from gasp_core.geometry.rays import ray_box_interval


def render_depth(
    field, origins: np.ndarray, dirs: np.ndarray, t_s: np.ndarray, scene: SceneConfig, step_m: float
) -> np.ndarray:
    """Depth of each ray (origin, direction, time): the first point along it where ``field`` (queries (Q, 4) ->
    P(occupied)) reaches 0.5, linearly interpolated between steps of ``step_m``, or where it leaves the scene."""
    o, d, t = origins, dirs, t_s
    _, t_out = ray_box_interval(o.astype(np.float64), d.astype(np.float64), scene.box_min, scene.box_max)
    steps = np.arange(step_m, float(t_out.max()) + step_m, step_m)
    pts = o[:, None, :] + d[:, None, :] * steps[None, :, None]
    q = np.concatenate([pts, np.broadcast_to(t[:, None, None], (*pts.shape[:2], 1))], axis=-1).reshape(-1, 4)
    p = np.asarray(field(q), np.float64).reshape(len(o), len(steps))
    p[steps[None, :] > t_out[:, None]] = 0.0
    hit = p >= 0.5
    first = np.where(hit.any(1), hit.argmax(1), -1)
    depth = np.minimum(t_out, steps[-1])
    for r in np.flatnonzero(first >= 0):
        k = first[r]
        if k == 0:
            depth[r] = steps[0]
        else:
            p0, p1 = p[r, k - 1], p[r, k]
            depth[r] = steps[k - 1] + (0.5 - p0) / max(p1 - p0, 1e-6) * step_m
    return depth
