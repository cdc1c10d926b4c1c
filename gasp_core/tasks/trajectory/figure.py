"""The report's trajectory figure: each init's waypoints beside the truth and constant velocity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.viz.figure import new_figure, save


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
