"""The non-learned 4D occupancy reference: occupancy persisting from the newest input sweep."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import SceneConfig
from gasp_core.models.voxelizer import height_bins


def persistence_field(voxels: np.ndarray, vox_cfg: dict, scene: SceneConfig):
    """P(occupied) at (x, y, z) is the t0 sweep's voxel there (half weight) plus the occupied fraction of its 3 x 3
    neighbourhood in that height bin, at every t: a field (queries (Q, 4) -> (Q,)) of one sample's stored
    ``voxels``; ``vox_cfg``: the labels' voxelizer settings."""
    size, z_bins = float(vox_cfg["voxel_size_m"]), int(vox_cfg["z_bins"])
    x0, _, y0, _, z0, z1 = scene.extent_m
    levels = len(vox_cfg.get("intensity_levels", ()))
    last = height_bins(voxels, z_bins, levels).astype(np.float32)  # (Z, H, W): the t0 sweep
    pad = np.pad(last, ((0, 0), (1, 1), (1, 1)))
    h, w = last.shape[1:]
    near = sum(pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    score = 0.5 * last + 0.5 * near

    def prob(q):
        ix = np.floor((q[:, 0] - x0) / size).astype(np.int64)
        iy = np.floor((q[:, 1] - y0) / size).astype(np.int64)
        iz = np.floor((q[:, 2] - z0) / ((z1 - z0) / z_bins)).astype(np.int64)
        ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (iz >= 0) & (iz < z_bins)
        p = np.zeros(len(q))
        p[ok] = score[iz[ok], iy[ok], ix[ok]]
        return p

    return prob
