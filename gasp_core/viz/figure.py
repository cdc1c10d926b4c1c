"""A figure without pyplot's global state or backend switch, and its atomic PNG write."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gasp_core.io import atomic_path


def new_figure(**kwargs) -> Figure:
    """A figure drawn by Agg (no display, no ``matplotlib.use``); ``kwargs`` go to :class:`Figure` (``figsize``)."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, **kwargs) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (PNG when it has none), at 110 dpi;
    ``kwargs`` go to ``savefig`` (``bbox_inches``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, **kwargs)
    return path
