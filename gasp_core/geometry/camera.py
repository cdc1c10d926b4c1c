"""Pinhole projection (OpenCV camera axes: x right, y down, z forward) and z-buffer visibility."""

from __future__ import annotations

import numpy as np


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and depth (N,) of camera-frame points; depth <= 0 means behind the camera."""
    depth = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (points_cam[:, :2] / depth[:, None]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    return uv, depth


def in_image(uv: np.ndarray, depth: np.ndarray, width: int, height: int, min_depth_m: float = 0.1) -> np.ndarray:
    """Points in front of the camera whose pixel lies inside the image (pixel centres at +0.5)."""
    return (depth > min_depth_m) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)


def zbuffer_visible(
    uv: np.ndarray, depth: np.ndarray, width: int, height: int, cell_px: int, tol_m: float, rel_tol: float = 0.0
) -> np.ndarray:
    """Points not hidden behind a nearer point in the same ``cell_px`` square of the image.

    A point is visible when its depth is within ``tol_m + rel_tol * depth_min`` of the nearest depth in
    its cell. Lidar points seen from a camera elsewhere on the car can lie behind a surface the lidar
    also hit; this drops them. All inputs must already be inside the image.
    """
    cols = int(np.ceil(width / cell_px))
    cell = (uv[:, 1] // cell_px).astype(np.int64) * cols + (uv[:, 0] // cell_px).astype(np.int64)
    nearest = np.full(cols * int(np.ceil(height / cell_px)), np.inf)
    np.minimum.at(nearest, cell, depth)
    return depth <= nearest[cell] * (1.0 + rel_tol) + tol_m
