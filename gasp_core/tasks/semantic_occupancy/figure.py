"""The report's 4D semantic occupancy figure: the predicted class in BEV per init beside the boxes."""

from __future__ import annotations

from pathlib import Path

from matplotlib.colors import ListedColormap

from gasp_core.viz.figure import new_figure, save
from gasp_core.viz.qualitative import bare


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
        bare(ax)
    fig.suptitle(
        "4D semantic occupancy at t0, z = 0.75 m (grey background, red vehicle, green pedestrian, blue cyclist, "
        "purple other)",
        fontsize=9,
    )
    return save(fig, path, bbox_inches="tight")
