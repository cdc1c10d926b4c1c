"""The report's 4D occupancy figure: depth rendered through each init's field against the lidar's."""

from __future__ import annotations

from pathlib import Path

from gasp_core.viz.figure import save
from gasp_core.viz.qualitative import panels


def depth_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Per init: depth rendered through the occupancy field against the true lidar range."""
    labels = labels or {}
    inits = list(q)
    fig, axes = panels(1, len(inits), 4)
    for ax, i in zip(axes[0], inits):
        ax.scatter(q[i]["true_depth"], q[i]["depth"], s=6)
        hi = float(max(q[i]["true_depth"].max(), q[i]["depth"].max()))
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_title(f"{labels.get(i, i)}: rendered vs true depth")
        ax.set_xlabel("true range (m)")
    axes[0, 0].set_ylabel("depth rendered through the field (m)")
    return save(fig, path, bbox_inches="tight")
