"""The report's BEV forecasting figure: predicted cover per init beside the truth, first test sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.viz.figure import save
from gasp_core.viz.qualitative import bare, panels


def forecast_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Rows: ground truth, then each init; columns: forecast times. Colours: vehicle red, pedestrian green, cyclist
    blue."""
    labels = labels or {}
    inits = list(q)
    truth = q[inits[0]]["truth"].astype(float)
    times = q[inits[0]]["times"]
    rows = [("ground truth", truth)] + [(labels.get(i, i), q[i]["prob"]) for i in inits]
    fig, axes = panels(len(rows), len(times), 2.6)
    for r, (name, arr) in enumerate(rows):
        for c, t in enumerate(times):
            axes[r, c].imshow(np.clip(arr[c].transpose(1, 2, 0), 0, 1), origin="lower")
            bare(axes[r, c])
            if r == 0:
                axes[r, c].set_title(f"t = {t:g} s")
        axes[r, 0].set_ylabel(name)
    fig.suptitle("BEV semantic forecast (red vehicle, green pedestrian, blue cyclist), first test sample")
    return save(fig, path, bbox_inches="tight")
