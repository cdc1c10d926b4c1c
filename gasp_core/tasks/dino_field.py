"""GASP's predicted DINO field over the BEV grid, projected on its top principal axes: the model inference behind the
report's ``dino_bev.png`` (which :func:`gasp_core.viz.qualitative.dino_figure` draws; the report only assembles)."""

from __future__ import annotations

import numpy as np


def dino_bev(model, voxels: np.ndarray, z_m: float = 1.0) -> dict:
    """The GASP model's DINO field over the BEV grid at t0 and height ``z_m``, projected on its top three principal
    axes (:class:`~gasp_core.teacher.pca.FeaturePCA` fitted on up to ~4000 cells), and the t0 sweep's BEV occupancy:
    what :func:`gasp_core.viz.qualitative.dino_figure` draws."""
    import torch

    from gasp_core.models.voxelizer import height_bins
    from gasp_core.tasks.bev import BevGrid
    from gasp_core.teacher.pca import FeaturePCA

    grid = BevGrid(tuple(model.scene.extent_m[:4]), model.cfg.voxelizer.voxel_size_m)
    xy = grid.centres()
    q = np.column_stack([xy, np.full(len(xy), z_m), np.zeros(len(xy))]).astype(np.float32)
    with torch.no_grad():
        vox = torch.from_numpy(voxels[None].astype(np.float32))
        feats = model(vox, dino_q=torch.from_numpy(q)[None])["dino"][0]
    pca = FeaturePCA.fit(feats[:: max(1, len(feats) // 4000)], 3)
    vox_cfg = model.cfg.voxelizer
    lidar = height_bins(voxels, vox_cfg.z_bins, len(vox_cfg.intensity_levels)).max(0)  # the t0 sweep
    return {"pca": pca.transform(feats).numpy().reshape(*grid.shape, 3), "lidar": lidar}
