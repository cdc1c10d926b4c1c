"""Rays against an axis-aligned box, and directions in a sensor's spherical coordinates."""

from __future__ import annotations

import numpy as np


def ray_box_interval(
    origins: np.ndarray, dirs: np.ndarray, box_min: np.ndarray, box_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (t_enter, t_exit) along unit rays ``origins + t * dirs`` inside the box (slab method).

    ``t_enter`` is clipped at 0; rays that miss the box get ``t_enter > t_exit``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t1 = (box_min - origins) * inv
        t2 = (box_max - origins) * inv
    lo = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    hi = np.where(np.isnan(t2), np.inf, np.maximum(t1, t2))
    # a zero direction component: inside the slab -> (-inf, inf), outside -> empty
    zero = dirs == 0
    inside = (origins >= box_min) & (origins <= box_max)
    lo = np.where(zero, np.where(inside, -np.inf, np.inf), lo)
    hi = np.where(zero, np.where(inside, np.inf, -np.inf), hi)
    return np.maximum(lo.max(axis=1), 0.0), hi.min(axis=1)


def spherical(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth in [-pi, pi), elevation in [-pi/2, pi/2]) of direction vectors (N, 3), x forward, z up."""
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    el = np.arctan2(dirs[:, 2], np.hypot(dirs[:, 0], dirs[:, 1]))
    return az, el


def from_spherical(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit directions (N, 3) from azimuth and elevation."""
    ce = np.cos(elevation)
    return np.stack([ce * np.cos(azimuth), ce * np.sin(azimuth), np.sin(elevation)], axis=-1)
