"""Past lidar sweeps -> a dense BEV grid with (time, height) as channels."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import SceneConfig
from gasp_core.models.config import VoxelizerConfig


def grid_shape(scene: SceneConfig, cfg: VoxelizerConfig) -> tuple[int, int]:
    """(rows along y, columns along x) of the BEV grid."""
    x0, x1, y0, y1 = scene.extent_m[:4]
    return int(round((y1 - y0) / cfg.voxel_size_m)), int(round((x1 - x0) / cfg.voxel_size_m))


def channels(scene: SceneConfig, cfg: VoxelizerConfig) -> int:
    return scene.past_sweeps * (cfg.z_bins + len(cfg.intensity_levels))


def height_bins(grid: np.ndarray, z_bins: int, intensity_levels: int = 0, sweep: int = -1) -> np.ndarray:
    """The (z_bins, H, W) occupancy channels of one sweep (default: the newest, t0's) of a ``voxelize`` grid whose
    voxelizer had ``z_bins`` height bins and ``intensity_levels`` intensity channels per sweep."""
    per_sweep = z_bins + intensity_levels
    blocks = grid.reshape(-1, per_sweep, *grid.shape[1:])
    return blocks[sweep, :z_bins]


def voxelize(sweeps_t0: list[np.ndarray], scene: SceneConfig, cfg: VoxelizerConfig) -> np.ndarray:
    """Binary occupancy (past_sweeps * (z_bins + L), H, W) float32 of points already in the t0 frame, L =
    ``len(cfg.intensity_levels)``.

    ``sweeps_t0`` lists the past sweeps oldest first (the last is t0's), each (N, 3) x, y, z or, with intensity
    levels, (N, 4) x, y, z, intensity; with C = z_bins + L, channel ``k * C + z`` holds sweep k, height bin z, and
    channel ``k * C + z_bins + l`` whether the cell holds a return at most ``intensity_max_z_m`` high with intensity
    of at least level l. Points outside the extent are dropped.
    """
    if len(sweeps_t0) != scene.past_sweeps:
        raise ValueError(f"expected {scene.past_sweeps} past sweeps, got {len(sweeps_t0)}")
    levels = np.asarray(cfg.intensity_levels, np.float64)
    rows, cols = grid_shape(scene, cfg)
    x0, _, y0, _, z0, z1 = scene.extent_m
    dz = (z1 - z0) / cfg.z_bins
    per_sweep = cfg.z_bins + len(levels)
    grid = np.zeros((scene.past_sweeps * per_sweep, rows * cols), np.float32)
    for k, pts in enumerate(sweeps_t0):
        if len(levels) and (pts.ndim != 2 or pts.shape[1] < 4):
            raise ValueError(
                f"sweep {k}: intensity levels {cfg.intensity_levels} need (N, 4) points with intensity, "
                f"got shape {pts.shape}"
            )
        # bins as integral floats (computed as floor((p - lower) / size), in place): no int arrays of every point
        ix = pts[:, 0] - x0
        ix /= cfg.voxel_size_m
        np.floor(ix, out=ix)
        iy = pts[:, 1] - y0
        iy /= cfg.voxel_size_m
        np.floor(iy, out=iy)
        iz = pts[:, 2] - z0
        iz /= dz
        np.floor(iz, out=iz)
        ok = (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < rows) & (iz >= 0) & (iz < cfg.z_bins)
        cell = (iy[ok] * cols + ix[ok]).astype(np.int64)
        grid[(k * per_sweep + iz[ok]).astype(np.int64), cell] = 1.0
        if len(levels):  # channel l: some ground return of the cell is at least level l bright
            ground = pts[ok, 2] <= cfg.intensity_max_z_m
            cell, intensity = cell[ground], pts[ok, 3][ground]
            for lvl, level in enumerate(levels):
                grid[k * per_sweep + cfg.z_bins + lvl, cell[intensity >= level]] = 1.0
    return grid.reshape(-1, rows, cols)
