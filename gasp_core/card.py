"""Model cards: the ``README.md`` every model folder carries, rendered from rows of facts, metrics and a snippet
that loads the model. :mod:`gasp_core.models.card` and the teacher stage fill them in.

Cards hold no timings, so a rerun that rebuilds identical weights rebuilds an identical folder and DVC skips what
depends on it; the wall time goes to ``timing.json`` beside the card, which ``.dvcignore`` leaves out of DVC's
hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gasp_core.io import atomic_path, write_json_atomic

CARD = "README.md"
TIMING = "timing.json"
"""Wall time of the run that wrote the folder (ignored by DVC: see ``.dvcignore``)."""


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    return str(v)


def render(title: str, rows: list[tuple[str, Any]], *, warning: str | None, metrics: dict, usage: str) -> str:
    lines = [f"# {title}", ""]
    if warning:
        lines += [f"> {warning}", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_value(v)} |" for k, v in rows] + [""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_value(v)} |" for k, v in metrics.items()] + [""]
    lines += ["## How to load", "", "```python", usage.strip(), "```", ""]
    lines += [
        f"Wall time of the run that wrote this folder: `{TIMING}` beside this card (kept out of DVC's hashes).",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, text: str, seconds: float | None = None) -> Path:
    """``folder/README.md`` (atomically) and, with ``seconds``, ``folder/timing.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / CARD) as tmp:
        Path(tmp).write_text(text)
    if seconds is not None:
        write_json_atomic(folder / TIMING, {"wall_seconds": round(float(seconds), 1)})
    return folder / CARD
