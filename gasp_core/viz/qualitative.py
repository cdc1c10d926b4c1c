"""The report's qualitative figures: the first test sample's predictions per initialisation beside the truth.

Each figure takes the ``evaluate`` stage's qualitative arrays of one task, ``{init: {name: array}}`` (inits in the
order drawn), the PNG path and the inits' display names, and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

from gasp_core.viz.figure import new_figure, save


def _panels(rows: int, cols: int, size: float):
    fig = new_figure(figsize=(size * cols, size * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def forecast_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Rows: ground truth, then each init; columns: forecast times. Colours: vehicle red, pedestrian green, cyclist
    blue."""
    labels = labels or {}
    inits = list(q)
    truth = q[inits[0]]["truth"].astype(float)
    times = q[inits[0]]["times"]
    rows = [("ground truth", truth)] + [(labels.get(i, i), q[i]["prob"]) for i in inits]
    fig, axes = _panels(len(rows), len(times), 2.6)
    for r, (name, arr) in enumerate(rows):
        for c, t in enumerate(times):
            axes[r, c].imshow(np.clip(arr[c].transpose(1, 2, 0), 0, 1), origin="lower")
            _bare(axes[r, c])
            if r == 0:
                axes[r, c].set_title(f"t = {t:g} s")
        axes[r, 0].set_ylabel(name)
    fig.suptitle("BEV semantic forecast (red vehicle, green pedestrian, blue cyclist), first test sample")
    return save(fig, path, bbox_inches="tight")


def map_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Rows: ground truth, then each init; columns: map classes; predicted probability."""
    labels = labels or {}
    inits = list(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    rows = [("ground truth", q[inits[0]]["truth"].astype(float))] + [(labels.get(i, i), q[i]["prob"]) for i in inits]
    fig, axes = _panels(len(rows), len(classes), 2.6)
    for r, (name, arr) in enumerate(rows):
        for c, cls in enumerate(classes):
            axes[r, c].imshow(arr[c], origin="lower", vmin=0, vmax=1, cmap="magma")
            _bare(axes[r, c])
            if r == 0:
                axes[r, c].set_title(cls)
        axes[r, 0].set_ylabel(name)
    fig.suptitle("Map segmentation: predicted probability vs ground truth, first test sample")
    return save(fig, path, bbox_inches="tight")


def trajectory_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Ego waypoints of each init (with and without odometry) against the truth and constant velocity."""
    labels = labels or {}
    inits = list(q)
    fig = new_figure(figsize=(5, 5))
    ax = fig.subplots()
    true = q[inits[0]]["true"]
    ax.plot(np.r_[0, true[:, 0]], np.r_[0, true[:, 1]], "k-o", label="ground truth", zorder=5)
    cv = q[inits[0]].get("constant_velocity")
    if cv is not None:
        ax.plot(np.r_[0, cv[:, 0]], np.r_[0, cv[:, 1]], "k:", label="constant velocity")
    for i in inits:
        name = labels.get(i, i)
        p = q[i]["pred"]
        (line,) = ax.plot(np.r_[0, p[:, 0]], np.r_[0, p[:, 1]], "-o", label=f"{name} (odometry)", alpha=0.8)
        if "pred_no_odometry" in q[i]:
            p = q[i]["pred_no_odometry"]
            ax.plot(
                np.r_[0, p[:, 0]],
                np.r_[0, p[:, 1]],
                "--x",
                color=line.get_color(),
                label=f"{name} (no odometry)",
                alpha=0.6,
            )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m, t0 frame)")
    ax.set_ylabel("y (m)")
    ax.legend()
    ax.set_title("Ego waypoints 0.5-3 s, first test sample")
    return save(fig, path, bbox_inches="tight")


def depth_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Per init: depth rendered through the occupancy field against the true lidar range."""
    labels = labels or {}
    inits = list(q)
    fig, axes = _panels(1, len(inits), 4)
    for ax, i in zip(axes[0], inits):
        ax.scatter(q[i]["true_depth"], q[i]["depth"], s=6)
        hi = float(max(q[i]["true_depth"].max(), q[i]["depth"].max()))
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_title(f"{labels.get(i, i)}: rendered vs true depth")
        ax.set_xlabel("true range (m)")
    axes[0, 0].set_ylabel("depth rendered through the field (m)")
    return save(fig, path, bbox_inches="tight")


def semantic_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Predicted class at t0, z = 0.75 m, per init, beside the boxes' BEV cover."""
    labels = labels or {}
    inits = list(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    cmap = ListedColormap(["#f2f2f2", "#d62728", "#2ca02c", "#1f77b4", "#9467bd"][: len(classes)])
    panels = [("ground truth (box cover)", q[inits[0]]["truth"])] + [(labels.get(i, i), q[i]["pred"]) for i in inits]
    fig = new_figure(figsize=(3.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels))
    for ax, (name, arr) in zip(axes, panels):
        ax.imshow(arr, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, interpolation="nearest")
        ax.set_title(name)
        _bare(ax)
    fig.suptitle(
        "4D semantic occupancy at t0, z = 0.75 m (grey background, red vehicle, green pedestrian, blue cyclist, "
        "purple other)",
        fontsize=9,
    )
    return save(fig, path, bbox_inches="tight")


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
    fig, axes = _panels(1, 2, 5)
    axes[0, 0].imshow(q["lidar"], origin="lower", cmap="gray_r")
    axes[0, 0].set_title("input: lidar at t0 (BEV)")
    axes[0, 1].imshow(pca_colours(q["pca"], q["lidar"]), origin="lower")
    axes[0, 1].set_title("GASP's predicted DINO field at t0, z = 1 m (PCA → RGB)")
    for ax in axes[0]:
        _bare(ax)
    return save(fig, path, bbox_inches="tight")


# the evaluate stage's task names with their figures, in the report's order
FIGURES = {
    "forecast": forecast_figure,
    "map": map_figure,
    "trajectory": trajectory_figure,
    "occupancy": depth_figure,
    "semantic_occupancy": semantic_figure,
}
