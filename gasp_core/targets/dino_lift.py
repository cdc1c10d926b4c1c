"""Lift camera pixels onto lidar points: which points of the nearest sweep a camera frame sees, and where.

Points are stored in the ego frame at their sweep's timestamp (motion-compensated, as AV2 ships them);
the ego moves between that time and the camera's, so each point goes city-ward with the sweep's pose
and back with the pose at the camera time before projection. Points behind the camera, outside the
image or hidden behind nearer points (z-buffer per image cell) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gasp_core.geometry import in_image, project, transform_points, zbuffer_visible


@dataclass
class LiftConfig:
    occlusion_cell_px: int = 4
    """Image cell of the z-buffer; a point farther than the cell's nearest (plus tolerances) is occluded."""
    occlusion_tol_m: float = 0.5
    """Absolute depth tolerance of the z-buffer."""
    occlusion_rel_tol: float = 0.05
    """Depth tolerance relative to the cell's nearest depth."""
    min_depth_m: float = 0.5
    """Points nearer to the camera than this are dropped."""
    max_sync_ms: float = 60.0
    """A frame whose nearest sweep is farther away in time than this is skipped (and counted)."""
    max_points_per_frame: int = 2000
    """Visible points kept per frame (a seeded random subset; 0 keeps all)."""


@dataclass
class LiftedPoints:
    sweep_ns: int
    points_ego: np.ndarray  # (P, 3) ego frame at sweep_ns
    t_ns: np.ndarray  # (P,) firing times
    uv: np.ndarray  # (P, 2) pixel positions in the image
    depth_m: np.ndarray  # (P,)
    surface: np.ndarray | None = None  # (P,) uint8 surface class of each point, when the store has labels


def nearest_sweep(sweep_ns: np.ndarray, camera_ns: int) -> int:
    return int(sweep_ns[np.argmin(np.abs(sweep_ns.astype(np.int64) - camera_ns))])


def lift_frame(
    log, camera: str, camera_ns: int, width: int, height: int, cfg: LiftConfig, rng: np.random.Generator | None = None
) -> LiftedPoints | None:
    """Points of the sweep nearest to the frame that the camera sees (at most ``max_points_per_frame``, drawn
    with ``rng``); None if no sweep is close enough."""
    ts = nearest_sweep(log.sweep_timestamps_ns, camera_ns)
    if abs(ts - camera_ns) > cfg.max_sync_ms * 1e6:
        return None
    sw = log.sweep(ts)
    poses = log.city_T_ego(np.array([ts, camera_ns]))
    cam_T_ego_ts = np.linalg.inv(log.ego_T_sensor(camera)) @ np.linalg.inv(poses[1]) @ poses[0]
    pts_cam = transform_points(cam_T_ego_ts, sw.points_ego.astype(np.float64))
    uv, depth = project(pts_cam, log.intrinsics(camera))
    keep = in_image(uv, depth, width, height, cfg.min_depth_m)
    idx = np.flatnonzero(keep)
    vis = zbuffer_visible(
        uv[idx], depth[idx], width, height, cfg.occlusion_cell_px, cfg.occlusion_tol_m, cfg.occlusion_rel_tol
    )
    idx = idx[vis]
    if cfg.max_points_per_frame and len(idx) > cfg.max_points_per_frame:
        rng = rng if rng is not None else np.random.default_rng(camera_ns)
        idx = np.sort(rng.choice(idx, cfg.max_points_per_frame, replace=False))
    surface = getattr(sw, "surface", None)
    return LiftedPoints(
        ts,
        sw.points_ego[idx],
        ts + sw.offset_ns[idx].astype(np.int64),
        uv[idx],
        depth[idx],
        None if surface is None else surface[idx],
    )
