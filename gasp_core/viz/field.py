"""BEV pictures of a pre-trained field: occupancy and ego path over the horizon, with the input lidar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.viz.figure import new_figure, save


def plot_field(
    panels: dict[str, list[tuple[float, np.ndarray]]], points_t0: np.ndarray, extent_m, out: Path, title: str
) -> None:
    """One row per field (e.g. occupancy, ego path), one column per time; the t0 sweep drawn on each."""
    rows = len(panels)
    cols = max(len(v) for v in panels.values())
    fig = new_figure(figsize=(3.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    x0, x1, y0, y1 = extent_m[:4]
    for r, (name, maps) in enumerate(panels.items()):
        for c, (t, img) in enumerate(maps):
            ax = axes[r][c]
            ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), vmin=0, vmax=1, cmap="magma")
            above_ground = (points_t0[:, 2] > 0.3) & (points_t0[:, 2] < 2.5)  # obstacles, not the ground rings
            ax.scatter(points_t0[above_ground, 0], points_t0[above_ground, 1], s=0.05, c="cyan", alpha=0.5)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_title(f"{name}, t = {t:.1f} s", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, out)
