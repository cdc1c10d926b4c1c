"""The report's radar summary: each initialisation's main metric per task, relative to the best one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.viz.figure import new_figure, save


def relative_scores(summary: dict, budget: str, init: str) -> dict[str, list[float]]:
    """Per task in ``summary["tasks"]``: ``init``'s estimate and interval bounds at ``budget`` relative to the best
    estimate of any init (1 = best; for a lower-is-better metric, best / value); 0 where there is nothing to show."""
    rel: dict[str, list[float]] = {k: [] for k in ("estimate", "low", "high")}
    for s in summary["tasks"].values():
        if budget not in s:  # a row without fine-tuned heads (scored zero-shot only)
            continue
        ivals = s[budget]["interval"]
        present = [d["estimate"] for d in ivals.values() if d["estimate"] is not None and not np.isnan(d["estimate"])]
        d = ivals.get(init)
        for k in rel:
            v = None if d is None else d[k]
            if v is None or np.isnan(v) or not present:
                rel[k].append(0.0)
            elif s["better"] == "higher":
                rel[k].append(v / max(present) if max(present) > 0 else 0.0)
            else:
                rel[k].append(min(present) / v if v > 0 else 1.0)
    return rel


def radar(
    summary: dict, path: Path, labels: dict[str, str] | None = None, titles: dict[str, str] | None = None
) -> Path:
    """One axis per task, each init's main metric relative to the best init on that axis (1 = best), as in the
    paper's radar summary, with its bootstrap interval as a band; one panel per label budget.

    ``summary``: ``{"tasks": {task: {"metric", "better", <budget>: {"interval": {init: {"estimate", "low",
    "high"}}}}}, "budgets", "inits", "level"}``; ``labels`` / ``titles``: display names of inits / tasks."""
    labels, titles = labels or {}, titles or {}
    tasks = [t for t, s in summary["tasks"].items() if all(b in s for b in summary["budgets"])]
    budgets, inits = summary["budgets"], summary["inits"]
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    fig = new_figure(figsize=(5 * len(budgets), 5))
    axes = fig.subplots(1, len(budgets), subplot_kw={"polar": True})
    for ax, b in zip(np.atleast_1d(axes), budgets):
        for i in inits:
            rel = relative_scores(summary, b, i)
            ring = np.r_[angles, angles[:1]]
            (line,) = ax.plot(ring, np.r_[rel["estimate"], rel["estimate"][:1]], label=labels.get(i, i))
            lo, hi = np.minimum(rel["low"], rel["high"]), np.maximum(rel["low"], rel["high"])
            ax.fill_between(ring, np.r_[lo, lo[:1]], np.r_[hi, hi[:1]], color=line.get_color(), alpha=0.15)
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{titles.get(t, t)}\n({summary['tasks'][t]['metric']})" for t in tasks], fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(f"{b} labels (1 = best init per task; bands: {100 * summary['level']:g}% intervals)", fontsize=9)
    np.atleast_1d(axes)[0].legend(loc="lower left", bbox_to_anchor=(-0.2, -0.15))
    return save(fig, path, bbox_inches="tight")
