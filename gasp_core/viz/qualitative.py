"""The report's qualitative figures: the panels every task's figure is drawn on, and GASP's DINO field in BEV.

Each task's figure lives in its package (``gasp_core.tasks.<task>.figure``): it takes the ``evaluate`` stage's
qualitative arrays of the task, ``{init: {name: array}}`` (inits in the order drawn), the PNG path and the inits'
display names, and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.viz.figure import new_figure, save


def panels(rows: int, cols: int, size: float):
    """A figure of ``rows`` x ``cols`` square panels of ``size`` inches; returns (figure, axes (rows, cols))."""
    fig = new_figure(figsize=(size * cols, size * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def bare(ax) -> None:
    """No ticks: the panel is an image."""
    ax.set_xticks([])
    ax.set_yticks([])


def pca_colours(pca: np.ndarray, lidar: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """RGB in [0, 1] from a (..., 3) projection on three principal axes: each channel stretched between its
    ``low`` and ``high`` percentiles, cells where ``lidar`` (same leading shape, in [0, 1]) is 0 dimmed."""
    flat = pca.reshape(-1, 3)
    lo, hi = np.percentile(flat, low, axis=0), np.percentile(flat, high, axis=0)
    rgb = np.clip((flat - lo) / (hi - lo + 1e-9), 0, 1).reshape(pca.shape)
    return rgb * (0.35 + 0.65 * lidar[..., None])


def dino_figure(q: dict, path: Path) -> Path:
    """The t0 lidar in BEV beside the predicted DINO field's PCA colours; ``q``: ``{"pca": (H, W, 3) projection on
    the top three principal axes, "lidar": (H, W) occupancy of the t0 sweep}``."""
    fig, axes = panels(1, 2, 5)
    axes[0, 0].imshow(q["lidar"], origin="lower", cmap="gray_r")
    axes[0, 0].set_title("input: lidar at t0 (BEV)")
    axes[0, 1].imshow(pca_colours(q["pca"], q["lidar"]), origin="lower")
    axes[0, 1].set_title("GASP's predicted DINO field at t0, z = 1 m (PCA → RGB)")
    for ax in axes[0]:
        bare(ax)
    return save(fig, path, bbox_inches="tight")
