"""Scoring saved fine-tuning runs on a split: per-run metrics, the non-learned baseline, qualitative samples and the
per-sample statistics (plain arrays, no pickles) that the report's bootstrap resamples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gasp_core.data.samples import SceneConfig
from gasp_core.io import atomic_path
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.progress import progress as progress_bar
from gasp_core.tasks.base import Task, nanmean, nanstd
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig
from gasp_core.tasks.finetune import (
    Features,
    _round,
    items_of,
    load_run,
    pretrained_dir,
    run_dir,
    run_name,
)
from gasp_core.tasks.metrics import compact_histograms, pr_from_histogram
from gasp_core.tasks.registry import make_task
from gasp_core.teacher.dinov2 import resolve_device


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Plain arrays (no pickles) as one compressed npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_qualitative(path: Path, qualitative: dict[str, dict]) -> Path:
    """The evaluate stage's predictions per init (``{init: {name: array}}``) as one npz, written atomically."""
    return save_arrays(path, {f"{init}/{k}": v for init, q in qualitative.items() for k, v in q.items()})


def load_qualitative(path: Path) -> dict[str, dict]:
    """Inverse of :func:`save_qualitative`."""
    out: dict[str, dict] = {}
    for key, value in load_arrays(path).items():
        init, name = key.split("/", 1)
        out.setdefault(init, {})[name] = value
    return out


STATS_SEP = "|"
BASELINE = "baseline"
ZERO_SHOT = "zero_shot"
"""The budget under which a pre-trained model's own decoder, scored without labels, is stored (task with a
``Task.zero_shot``): ``results[init][zero_shot]`` and stats keys ``init|zero_shot|pretrain_<p>|name``."""


def zero_shot_run(pretrain_seed: int) -> str:
    """The run name of a zero-shot evaluation: the pre-training seed alone (no fine-tuning seed)."""
    return f"pretrain_{pretrain_seed}"


def stats_key(init: str, budget: str, run: str, name: str) -> str:
    return STATS_SEP.join((init, budget, run, name))


def split_stats(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """``{init: {budget: {run: {name: array}}}}`` from what :func:`evaluate_runs` stores (the baseline under
    init ``baseline``, budget and run ``-``; zero-shot scores under budget ``zero_shot``)."""
    out: dict = {}
    for key, value in arrays.items():
        if STATS_SEP not in key:
            continue
        init, budget, run, name = key.split(STATS_SEP)
        out.setdefault(init, {}).setdefault(budget, {}).setdefault(run, {})[name] = value
    return out


def _stored(task: Task, stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: compact_histograms(v) if k in task.histogram_stats else v for k, v in stats.items()}


def evaluate_runs(
    task_name: str,
    *,
    inits: dict[str, Path],
    runs_root: Path,
    labels_dir: Path,
    occupancy_dir: Path,
    scene: SceneConfig,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    pretrain_seeds: list[int] = (0,),
    split: str = "test",
    progress: bool = True,
) -> tuple[dict, dict, dict]:
    """Score every saved run of a task on ``split``, and the task's non-learned baseline where it has one.

    Where the task has a zero-shot protocol (:meth:`Task.zero_shot`: 4D occupancy) and an init's pre-trained model
    has the decoder for it, that model is also scored on its own, per pre-training seed, as budget ``zero_shot``
    (runs ``pretrain_<p>``, see :data:`ZERO_SHOT`), on the same items.

    Returns (metrics: per init / budget the mean and std over runs and each run's metrics, plus ``baseline``;
    qualitative arrays per init of its first run on the split's first sample; per-sample statistics of every run
    and of the baseline for the report's bootstrap, keyed by :func:`stats_key`, with ``sample_log`` giving each
    sample's log index in the split)."""
    if ZERO_SHOT in cfg.budgets:
        raise ValueError(f"finetune.budgets: {ZERO_SHOT!r} names the zero-shot scores; rename that budget")
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    logs = list(getattr(splits, split))
    items = items_of(labels, logs)
    metrics: dict = {"task": task_name, "split": split, "samples": len(items), "logs": len(logs), "results": {}}
    qualitative: dict = {}
    stats: dict[str, np.ndarray] = {"sample_log": np.array([logs.index(lid) for lid, _ in items], np.int64)}
    runs = [(p, s) for p in pretrain_seeds for s in cfg.seeds]
    budgets = [] if task_name in cfg.zero_shot_only else list(cfg.budgets)
    bar = progress_bar(
        total=len(inits) * len(budgets) * len(runs), desc=f"evaluate {task_name}", unit="run", disable=not progress
    )
    for init, init_dir in inits.items():
        per_run: dict[str, dict[str, dict]] = {b: {} for b in budgets}
        for p in pretrain_seeds:
            encoder_dir = pretrained_dir(init_dir, p)
            model = load_pretrained(encoder_dir, device)
            zero_shot = task.zero_shot(model, items)
            if zero_shot is not None:
                per_run.setdefault(ZERO_SHOT, {})[zero_shot_run(p)] = zero_shot.metrics
                stats.update(
                    {
                        stats_key(init, ZERO_SHOT, zero_shot_run(p), k): v
                        for k, v in _stored(task, zero_shot.stats).items()
                    }
                )
            shared = Features(model.encoder, labels, device, True)
            for budget in budgets:
                for seed in cfg.seeds:
                    head, encoder = load_run(
                        task, run_dir(Path(runs_root) / init, budget, p, seed), encoder_dir, device
                    )
                    ev = task.evaluate(
                        head, shared if encoder is None else Features(encoder, labels, device, True), items
                    )
                    per_run[budget][run_name(p, seed)] = ev.metrics
                    stats.update(
                        {stats_key(init, budget, run_name(p, seed), k): v for k, v in _stored(task, ev.stats).items()}
                    )
                    if init not in qualitative and ev.qualitative:
                        qualitative[init] = ev.qualitative
                    bar.update()
        for budget, by_run in per_run.items():
            keys = next(iter(by_run.values())).keys()
            metrics["results"].setdefault(init, {})[budget] = {
                "mean": _round({k: nanmean([r[k] for r in by_run.values()]) for k in keys}),
                "std": _round({k: nanstd([r[k] for r in by_run.values()]) for k in keys}),
                "runs": {name: _round(r) for name, r in by_run.items()},
            }
    bar.close()
    base = task.baseline(items)
    if base is not None:
        metrics["baseline"] = _round(base.metrics)
        stats.update({stats_key(BASELINE, "-", "-", k): v for k, v in _stored(task, base.stats).items()})
    return metrics, qualitative, stats


PR_POINTS = 200
"""At most this many points per precision-recall curve (evenly spaced along the thresholds, ends kept)."""


def pr_curves(
    task: Task | type[Task], stats: dict[str, np.ndarray], budget: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per initialisation: the precision-recall curve (recall, precision) of its first run at ``budget``, over all
    test samples, pooling the histogram's other axes (forecast: the horizons; semantic occupancy: the classes, a
    micro-average), and of the non-learned baseline where the task has one. Empty for tasks without AP histograms
    (map, trajectory)."""
    if not task.histogram_stats:
        return {}
    name = task.histogram_stats[0]
    out = {}
    for init, by_budget in split_stats(stats).items():
        runs = by_budget.get("-" if init == BASELINE else budget, {})
        if not runs:
            continue
        hist = runs[sorted(runs)[0]][name]
        pooled = hist.reshape(-1, *hist.shape[-2:]).sum(0)
        recall, precision = pr_from_histogram(pooled)
        if len(recall) > PR_POINTS:
            idx = np.unique(np.linspace(0, len(recall) - 1, PR_POINTS).round().astype(int))
            recall, precision = recall[idx], precision[idx]
        out[init] = (recall, precision)
    return out


def save_pr_curves(out_dir: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Path]:
    """``out_dir/pr_<init>.csv`` (recall, precision): the DVC plots of dvc.yaml's ``plots:`` section."""
    paths = []
    for init, (recall, precision) in curves.items():
        path = Path(out_dir) / f"pr_{init}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{r:.6f},{p:.6f}\n" for r, p in zip(recall, precision))
        with atomic_path(path) as tmp:
            tmp.write_text("recall,precision\n" + rows)
        paths.append(path)
    return paths
