"""Ego-path queries: is (x, y) under the ego vehicle's footprint at time t after t0?

The footprint is the ego box (``LogMeta.ego``: length, width, rear overhang behind the rear-axle
origin) posed at t0 + t, in the t0 frame. Positives lie inside it; near negatives are drawn around the
whole future path (so many lie on the path at another time: the hard cases); far negatives anywhere
in the extent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.schema import EgoDims


@dataclass
class EgoPathConfig:
    positives_per_sample: int = 1000
    """Queries inside the footprint at their time."""
    near_per_sample: int = 1000
    """Queries drawn around the future path (label by inside-ness at their own time)."""
    far_per_sample: int = 500
    """Queries drawn uniformly over the extent."""
    near_margin_m: float = 2.0
    """How far around the footprint near queries are drawn."""


class EgoSource(IntEnum):
    POSITIVE = 0
    NEAR = 1
    FAR = 2


@dataclass
class EgoQueries:
    xy: np.ndarray  # (Q, 2) t0 frame
    t_s: np.ndarray  # (Q,)
    inside: np.ndarray  # (Q,) uint8
    source: np.ndarray  # (Q,) EgoSource


def footprint_local(ego: EgoDims) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the footprint in the ego frame (origin at the rear axle)."""
    return -ego.rear_overhang_m, ego.length_m - ego.rear_overhang_m, -ego.width_m / 2, ego.width_m / 2


def inside_footprint(xy: np.ndarray, t0_T_ego: np.ndarray, ego: EgoDims) -> np.ndarray:
    """Whether each xy (Q, 2) lies in the footprint posed by its own t0_T_ego (Q, 4, 4)."""
    d = xy - t0_T_ego[:, :2, 3]
    local = np.einsum("nji,nj->ni", t0_T_ego[:, :2, :2], d)  # R^T d
    x0, x1, y0, y1 = footprint_local(ego)
    return (local[:, 0] >= x0) & (local[:, 0] <= x1) & (local[:, 1] >= y0) & (local[:, 1] <= y1)


def ego_queries(log, sample: Sample, scene: SceneConfig, cfg: EgoPathConfig, rng: np.random.Generator) -> EgoQueries:
    ego = log.meta.ego
    t0_T_city = np.linalg.inv(log.city_T_ego(np.array([sample.t0_ns]))[0])

    def poses(t_s: np.ndarray) -> np.ndarray:
        return t0_T_city @ log.city_T_ego(sample.t0_ns + np.round(t_s * 1e9).astype(np.int64))

    x0, x1, y0, y1 = footprint_local(ego)
    # positives: uniform in the footprint at a uniform time
    t_pos = rng.uniform(0.0, scene.horizon_s, cfg.positives_per_sample)
    local = np.column_stack([rng.uniform(x0, x1, len(t_pos)), rng.uniform(y0, y1, len(t_pos))])
    p = poses(t_pos)
    xy_pos = np.einsum("nij,nj->ni", p[:, :2, :2], local) + p[:, :2, 3]
    # near: around the footprint at another time, labelled at their own time
    t_near = rng.uniform(0.0, scene.horizon_s, cfg.near_per_sample)
    t_other = rng.uniform(0.0, scene.horizon_s, cfg.near_per_sample)
    m = cfg.near_margin_m
    local = np.column_stack([rng.uniform(x0 - m, x1 + m, len(t_near)), rng.uniform(y0 - m, y1 + m, len(t_near))])
    q = poses(t_other)
    xy_near = np.einsum("nij,nj->ni", q[:, :2, :2], local) + q[:, :2, 3]
    # far: anywhere in the extent
    t_far = rng.uniform(0.0, scene.horizon_s, cfg.far_per_sample)
    xy_far = np.column_stack(
        [
            rng.uniform(scene.extent_m[0], scene.extent_m[1], len(t_far)),
            rng.uniform(scene.extent_m[2], scene.extent_m[3], len(t_far)),
        ]
    )
    xy = np.concatenate([xy_pos, xy_near, xy_far])
    t = np.concatenate([t_pos, t_near, t_far])
    inside = inside_footprint(xy, poses(t), ego)
    source = np.concatenate(
        [
            np.full(len(t_pos), EgoSource.POSITIVE),
            np.full(len(t_near), EgoSource.NEAR),
            np.full(len(t_far), EgoSource.FAR),
        ]
    ).astype(np.uint8)
    return EgoQueries(xy, t, inside.astype(np.uint8), source)
