"""The report's map figure: predicted layers per init beside the truth, first test sample."""

from __future__ import annotations

from pathlib import Path

from gasp_core.viz.figure import save
from gasp_core.viz.qualitative import bare, panels


def map_figure(q: dict, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Rows: ground truth, then each init; columns: map classes; predicted probability."""
    labels = labels or {}
    inits = list(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    rows = [("ground truth", q[inits[0]]["truth"].astype(float))] + [(labels.get(i, i), q[i]["prob"]) for i in inits]
    fig, axes = panels(len(rows), len(classes), 2.6)
    for r, (name, arr) in enumerate(rows):
        for c, cls in enumerate(classes):
            axes[r, c].imshow(arr[c], origin="lower", vmin=0, vmax=1, cmap="magma")
            bare(axes[r, c])
            if r == 0:
                axes[r, c].set_title(cls)
        axes[r, 0].set_ylabel(name)
    fig.suptitle("Map segmentation: predicted probability vs ground truth, first test sample")
    return save(fig, path, bbox_inches="tight")
