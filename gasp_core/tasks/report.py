"""Stage ``report``: the scratch / UnO / GASP comparison as a markdown table, a radar chart and qualitative figures.

Reads the ``evaluate`` stages' metrics (test split) and predictions; writes ``<out>/README.md`` (tables, with
whether the paper's ordering GASP >= UnO >= scratch held per task and budget), ``summary.json``,
``main_metrics.csv`` (for ``dvc plots``) and PNG figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from gasp_core.io import atomic_path
from gasp_core.tasks import registry
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig
from gasp_core.tasks.evaluation import BASELINE, ZERO_SHOT
from gasp_core.tasks.stats import Bootstrap, BootstrapConfig
from gasp_core.viz.qualitative import dino_figure
from gasp_core.viz.radar import radar

log = logging.getLogger(__name__)
LABELS = {
    "scratch": "scratch",
    "uno": "UnO",
    "uno_enhanced": "UnO+",
    "gasp": "GASP",
    "gasp_oracle": "GASP (oracle teacher†)",
}
ORACLE_INITS = ("gasp_oracle",)
ORACLE_NOTE = (
    "† The oracle teacher is a control, not a result real data can have: its targets are a fixed embedding of the "
    "simulator's surface class at each lidar point (what a perfect foundation model would give), through the same "
    "PCA, loss and stages as the in-domain teacher's."
)


def _label(init: str) -> str:
    return LABELS.get(init, init)


def _fmt(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def _metric_title(task: str, metric: str) -> str:
    return registry.TASK_CLASSES[task].metric_titles.get(metric, metric)


def _row_title(row: str, rows: dict) -> str:
    """A task's title; a co-primary row adds its metric."""
    task, metric, _ = rows[row]
    title = registry.TASK_CLASSES[task].title
    return title if row == task else f"{title} ({_metric_title(task, metric)})"


def _fmt_pair(d: dict | None) -> str:
    """A paired difference and its verdict; without a verdict, the estimate alone (no interval to misread)."""
    if not d:
        return "n/a"
    if d["verdict"] == NO_VERDICT:
        return f"{_fmt_ci({'difference': d['difference'], 'low': float('nan')}, signed=True)} *{NO_VERDICT}*"
    return f"{_fmt_ci(d, signed=True)} **{d['verdict']}**"


def _fmt_ci(d: dict | None, signed: bool = False) -> str:
    if not d:
        return "n/a"
    value = d.get("estimate", d.get("difference"))
    if value is None or np.isnan(value):
        return "n/a"
    f = "{:+.2g}" if signed and abs(value) < 0.01 else ("{:+.3f}" if signed else "{:.3f}")
    if np.isnan(d["low"]):
        return f.format(value)
    return f"{f.format(value)} [{f.format(d['low'])}, {f.format(d['high'])}]"


MIN_PRETRAIN_SEEDS = 2
"""Pre-training seeds each side of an init-vs-init comparison needs for a verdict: run-to-run variance of
pre-training flips verdicts between machines, and one seed cannot put it into the interval."""
NO_VERDICT = "no verdict"


def pretrain_seeds_of(runs: dict) -> set[str]:
    """The pre-training seeds among one init and budget's runs (keys ``pretrain_<p>/seed_<s>``)."""
    return {name.split("/")[0] for name in runs}


LADDER = ("scratch", "uno", "uno_enhanced", "gasp")
"""The paper's ladder, weakest first: each rung adds to the one below it."""


def comparison_pairs(inits: list[str]) -> list[tuple[str, str]]:
    """The pairs the report compares (first vs second), among ``inits``:

    - each rung of :data:`LADDER` against the rung below it, then the paper's two comparisons, GASP vs UnO and UnO vs
      scratch;
    - a GASP variant (``gasp_<x>``: another teacher, or an ablation) against GASP and against UnO;
    - any other initialisation against the one listed before it in ``inits``."""
    pairs: list[tuple[str, str]] = []

    def add(a: str, c: str) -> None:
        if a in inits and c in inits and a != c and (a, c) not in pairs:
            pairs.append((a, c))

    rungs = [i for i in reversed(inits) if i in LADDER]
    for a, c in zip(rungs, rungs[1:]):
        add(a, c)
    add("gasp", "uno")
    add("uno", "scratch")
    for k, init in enumerate(inits):
        if init in LADDER:
            continue
        if init.startswith("gasp_"):
            add(init, "gasp")
            add(init, "uno")
        elif k:
            add(init, inits[k - 1])
    return pairs


def compare(
    task: str,
    stats: dict,
    groups: np.ndarray,
    inits: list[str],
    budgets: list[str],
    fn,
    cfg: BootstrapConfig,
    direction: str | None = None,
) -> dict:
    """Per budget: each init's main-metric interval, the paired differences of :func:`comparison_pairs`, and each init
    against the non-learned baseline (when the task has one), from the evaluate stage's per-sample statistics.
    ``direction`` ("higher" | "lower") is that of ``fn``'s metric when it is not the task's main one."""
    better = (direction or registry.TASK_CLASSES[task].main_metric[1]) == "higher"
    base = list(stats.get(BASELINE, {}).get("-", {}).values())
    out: dict = {}
    for b in budgets:
        boot = Bootstrap(groups, cfg)
        runs = {i: [stats[i][b][r] for r in sorted(stats[i][b])] for i in inits if i in stats and b in stats[i]}
        res: dict = {"interval": {i: boot.interval(r, fn) for i, r in runs.items()}, "pairs": {}, "vs_baseline": {}}
        if base:
            res["baseline"] = boot.interval(base, fn)
        for a, c in comparison_pairs(inits):
            if a in runs and c in runs:
                d = boot.difference(runs[a], runs[c], fn, better)
                seeds = min(len(pretrain_seeds_of(stats[a][b])), len(pretrain_seeds_of(stats[c][b])))
                if seeds < MIN_PRETRAIN_SEEDS:
                    d["verdict"] = NO_VERDICT
                    d["why"] = (
                        f"{seeds} pre-training seed(s): the interval leaves out pre-training variance, which decides "
                        f"such comparisons; a verdict needs at least {MIN_PRETRAIN_SEEDS}"
                    )
                res["pairs"][f"{a}>{c}"] = d
        for i, r in runs.items():
            if base:
                res["vs_baseline"][i] = boot.difference(r, base, fn, better)
        out[b] = res
    return out


def write_report(
    eval_metrics: dict[str, dict],
    qualitative: dict[str, dict],
    out: Path,
    inits: list[str],
    budgets: list[str],
    comparisons: dict[str, dict],
    extras: dict | None = None,
    plot_csv: Path | None = None,
    level: float = 0.95,
    zero_shot: dict[str, dict] | None = None,
) -> dict:
    """Tables, radar chart and figures into ``out``; returns the summary (also written as summary.json). The main
    metrics also go to ``plot_csv`` (a ``dvc plots`` file outside ``out``) when given. ``comparisons[task]`` is what
    :func:`compare` gives; ``zero_shot[task]``, its entry for budget ``zero_shot`` (see :func:`zero_shot_lines`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in registry.TASK_CLASSES if t in eval_metrics]
    pct = f"{100 * level:g}%"
    summary: dict = {"tasks": {}, "inits": inits, "budgets": budgets, "level": level}
    lines = [
        "# Downstream comparison: scratch vs UnO vs GASP pre-training",
        "",
        f"Test split. Each cell: the main metric averaged over runs (pre-training seed x fine-tuning seed) with its "
        f"{pct} bootstrap interval (test samples and runs resampled). Built by `dvc repro` (stage `report`).",
        "",
    ]
    if extras:
        lines += [f"- {k}: {v}" for k, v in extras.items()] + [""]
    if any(i in ORACLE_INITS for i in inits):
        lines += [ORACLE_NOTE, ""]
    # one row per task's main metric, then its co-primary metrics (keys ``task:metric`` in ``comparisons``)
    rows = {t: (t, *registry.TASK_CLASSES[t].main_metric) for t in tasks}
    rows.update(
        {
            k: (k.split(":")[0], k.split(":", 1)[1], v.get("direction", "lower"))
            for k, v in comparisons.items()
            if ":" in k and k.split(":")[0] in tasks
        }
    )
    rows = {k: rows[k] for k in sorted(rows, key=lambda k: (tasks.index(rows[k][0]), k))}
    has_base = any("baseline" in comparisons[r][b] for r in rows for b in budgets)
    header = "| task (metric) | " + " | ".join(f"{_label(i)} ({b})" for b in budgets for i in inits)
    header += " | non-learned baseline |" if has_base else " |"
    lines += ["## Main metric per task", "", header, "|" + "---|" * (1 + len(budgets) * len(inits) + has_base)]
    csv_rows = ["task,budget,init,value"]
    for row in rows:
        task, metric, better = rows[row]
        cmp = comparisons[row]
        cells = [_fmt_ci(cmp[b]["interval"].get(i)) for b in budgets for i in inits]
        for b in budgets:
            for i, d in cmp[b]["interval"].items():
                if d["estimate"] is not None and not np.isnan(d["estimate"]):
                    csv_rows.append(f"{row},{b},{i},{d['estimate']}")
        if has_base:
            cells.append(_fmt_ci(cmp[budgets[0]].get("baseline")))
        arrow = "↑" if better == "higher" else "↓"
        lines.append(
            f"| {registry.TASK_CLASSES[task].title} ({_metric_title(task, metric)} {arrow}) | "
            + " | ".join(cells)
            + " |"
        )
        summary["tasks"][row] = {"metric": metric, "better": better, **{b: cmp[b] for b in budgets}}
    pairs = [p for p in comparison_pairs(inits)]
    lines += [
        "",
        f"## Does the paper's ordering hold? Paired differences of the main metric, {pct} intervals",
        "",
        "Positive = the first is better (for L2, lower). *better* / *worse*: the interval excludes 0; *inconclusive*: "
        f"it does not; *{NO_VERDICT}*: fewer than {MIN_PRETRAIN_SEEDS} pre-training seeds, so the interval would leave "
        "out the pre-training variance that decides these comparisons (the estimate alone is shown).",
        "",
        "| task | budget | " + " | ".join(f"{_label(a)} vs {_label(c)}" for a, c in pairs) + " |",
        "|---|---|" + "---|" * len(pairs),
    ]
    for row in rows:
        for b in budgets:
            cells = []
            for a, c in pairs:
                d = comparisons[row][b]["pairs"].get(f"{a}>{c}")
                cells.append(_fmt_pair(d))
            lines.append(f"| {_row_title(row, rows)} | {b} | " + " | ".join(cells) + " |")
    if has_base:
        lines += [
            "",
            "### Against the non-learned baseline (constant velocity; occupancy persisting from the last input sweep)",
            "",
            "| task | budget | " + " | ".join(f"{_label(i)} vs baseline" for i in inits) + " |",
            "|---|---|" + "---|" * len(inits),
        ]
        for row in rows:
            for b in budgets:
                vs = comparisons[row][b]["vs_baseline"]
                if vs:
                    lines.append(
                        f"| {_row_title(row, rows)} | {b} | "
                        + " | ".join(
                            f"{_fmt_ci(vs[i], signed=True)} **{vs[i]['verdict']}**" if i in vs else "n/a" for i in inits
                        )
                        + " |"
                    )
    lines += zero_shot_lines(zero_shot or {}, inits, summary, csv_rows, pct)
    lines += ["", "## Secondary metrics (mean ± std over runs)", ""]
    for task in tasks:
        res = eval_metrics[task]["results"]
        base = eval_metrics[task].get("baseline")
        keys = [
            k
            for k in registry.TASK_CLASSES[task].secondary
            if any(k in res[i][b]["mean"] for i in res for b in budgets)
        ]
        lines += [
            f"### {registry.TASK_CLASSES[task].title}",
            "",
            "| init | budget | " + " | ".join(keys) + " |",
            "|" + "---|" * (2 + len(keys)),
        ]
        for i in inits:
            for b in budgets:
                if i in res and b in res[i]:
                    r = res[i][b]
                    lines.append(
                        f"| {_label(i)} | {b} | "
                        + " | ".join(_fmt(r["mean"].get(k), r["std"].get(k)) for k in keys)
                        + " |"
                    )
        if base:
            lines.append("| baseline | - | " + " | ".join(_fmt(base.get(k), None) for k in keys) + " |")
        lines.append("")
    figures = [radar(summary, out / "radar.png", LABELS, registry.titles())]
    for name, figure in registry.figures().items():
        if qualitative.get(name):
            figures.append(figure(qualitative[name], out / f"{name}.png", LABELS))
    if "dino_bev" in qualitative:
        figures.append(dino_figure(qualitative["dino_bev"], out / "dino_bev.png"))
    lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures if f is not None] + [""]
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(_rounded(summary), indent=1))
    for csv in (out / "main_metrics.csv", plot_csv):
        if csv is not None:
            with atomic_path(Path(csv)) as tmp:
                tmp.write_text("\n".join(csv_rows) + "\n")
    return summary


def zero_shot_lines(zero_shot: dict[str, dict], inits: list[str], summary: dict, csv_rows: list[str], pct: str):
    """The zero-shot section: per task with zero-shot scores (4D occupancy: each pre-trained model's own occupancy
    decoder, UnO's protocol, no labels), each init's main metric with its interval, its difference to the non-learned
    baseline and the pairs of :func:`comparison_pairs` among the inits that have one; ``zero_shot[task]`` is
    :func:`compare`'s entry for budget ``zero_shot``. Adds ``summary["tasks"][task]["zero_shot"]`` and the csv rows."""
    lines: list[str] = []
    for task, cmp in zero_shot.items():
        if not cmp["interval"]:
            continue
        metric, better = registry.TASK_CLASSES[task].main_metric
        have = [i for i in inits if i in cmp["interval"]]
        pairs = [(a, c) for a, c in comparison_pairs(inits) if f"{a}>{c}" in cmp["pairs"]]
        summary["tasks"].setdefault(task, {"metric": metric, "better": better})[ZERO_SHOT] = cmp
        csv_rows += [
            f"{task},{ZERO_SHOT},{i},{cmp['interval'][i]['estimate']}"
            for i in have
            if cmp["interval"][i]["estimate"] is not None and not np.isnan(cmp["interval"][i]["estimate"])
        ]
        arrow = "↑" if better == "higher" else "↓"
        lines += [
            "",
            f"## {registry.TASK_CLASSES[task].title}, zero-shot (each model's own pre-trained "
            f"{task.replace('_', ' ')} decoder, no labels)",
            "",
            f"No head and no labels: each pre-trained model's own decoder scored on the same test queries as the heads "
            f"above. {_metric_title(task, metric)} {arrow}, averaged over pre-training seeds, with its {pct} "
            "interval (test samples and pre-training seeds resampled); differences paired as above.",
            "",
            f"| init | {metric} | vs non-learned baseline |",
            "|---|---|---|",
        ]
        for i in have:
            lines.append(f"| {_label(i)} | {_fmt_ci(cmp['interval'][i])} | {_fmt_pair(cmp['vs_baseline'].get(i))} |")
        if "baseline" in cmp:
            lines.append(f"| baseline | {_fmt_ci(cmp['baseline'])} | - |")
        if pairs:
            lines += ["", "| pair | difference |", "|---|---|"]
            for a, c in pairs:
                lines.append(f"| {_label(a)} vs {_label(c)} | {_fmt_pair(cmp['pairs'][f'{a}>{c}'])} |")
    return lines


def _rounded(x, digits: int = 5):
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    if isinstance(x, float):
        return None if np.isnan(x) else round(x, digits)
    return x


def driving_seconds(store: Path, logs: list[str]) -> float:
    """Seconds of driving in ``logs`` of the store: each log's span from its first to its last lidar sweep."""
    from gasp_core.data.store import LogStore

    stored = LogStore(Path(store))
    total = 0.0
    for log_id in logs:
        t = stored.log(log_id).sweep_timestamps_ns
        total += (int(t.max()) - int(t.min())) / 1e9 if len(t) else 0.0
    return total


def _driving_time(store: Path | None, logs: list[str]) -> str:
    if store is None:
        return ""
    s = driving_seconds(store, logs)
    return f", {s / 3600:.3g} h of driving ({s:,.0f} s)"


def build_report(
    metrics_dir: Path,
    eval_dir: Path,
    *,
    labels_dir: Path,
    out: Path,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    plot: Path | None = None,
    gasp_model: Path | None = None,
    pretrain_seeds: list[int] = (0,),
    bootstrap: BootstrapConfig | None = None,
    store: Path | None = None,
) -> dict[str, float]:
    """The report stage: read every ``evaluate@<task>`` output (``metrics_dir/<task>.json``,
    ``eval_dir/<task>/{qualitative,stats}.npz``), bootstrap the intervals, add GASP's DINO field in BEV when
    ``gasp_model`` (the variant's folder; its first pre-training seed is drawn) has one, state the pre-training
    pool's hours of driving when given the ``store``, write the report to ``out``;
    returns the main metric and the paired differences per task / budget, flat, for DVC's metrics."""
    from gasp_core.models.gasp_model import load_pretrained
    from gasp_core.tasks.build import TaskLabels
    from gasp_core.tasks.dino_field import dino_bev
    from gasp_core.tasks.evaluation import load_arrays, load_qualitative, split_stats
    from gasp_core.tasks.finetune import budget_logs

    bootstrap = bootstrap or BootstrapConfig()
    metrics, qualitative, comparisons, zero_shot = {}, {}, {}, {}
    for task in cfg.tasks:
        path = Path(metrics_dir) / f"{task}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the evaluate@{task} stage first")
        metrics[task] = json.loads(path.read_text())
        q = load_qualitative(Path(eval_dir) / task / "qualitative.npz")
        if q:
            qualitative[task] = q
        arrays = load_arrays(Path(eval_dir) / task / "stats.npz")
        groups = arrays["sample_log"] if bootstrap.unit == "log" else np.arange(len(arrays["sample_log"]))
        comparisons[task] = compare(
            task,
            split_stats(arrays),
            groups,
            cfg.inits,
            list(cfg.budgets),
            registry.TASK_CLASSES[task].main_from_stats,
            bootstrap,
        )
        for metric, direction, co_fn in registry.TASK_CLASSES[task].co_primary:
            comparisons[f"{task}:{metric}"] = {
                **compare(task, split_stats(arrays), groups, cfg.inits, list(cfg.budgets), co_fn, bootstrap, direction),
                "direction": direction,
            }
        by_init, fn = split_stats(arrays), registry.TASK_CLASSES[task].main_from_stats
        if any(ZERO_SHOT in by_budget for by_budget in by_init.values()):  # scored on each init's own decoder
            zero_shot[task] = compare(task, by_init, groups, cfg.inits, [ZERO_SHOT], fn, bootstrap)[ZERO_SHOT]
        if task in cfg.zero_shot_only:  # no heads: the task has its zero-shot section only
            del metrics[task]
            for key in [k for k in comparisons if k == task or k.startswith(f"{task}:")]:
                del comparisons[key]
            qualitative.pop(task, None)
        log.info("%s: bootstrap intervals done", task)
    model_dir = Path(gasp_model) / f"seed_{pretrain_seeds[0]}" if gasp_model is not None else None
    if model_dir is not None and (model_dir / "config.json").is_file():
        model = load_pretrained(model_dir)
        if model.dino is not None:
            voxels = TaskLabels(labels_dir).log(splits.test[0])["voxels"][0]
            qualitative["dino_bev"] = dino_bev(model, voxels)
    first = json.loads((Path(metrics_dir) / f"{cfg.tasks[0]}.json").read_text())
    extras = {
        "encoder": "fine-tuned with the heads" if cfg.encoder == "full" else "frozen (heads on fixed features)",
        "pre-training pool": f"{len(splits.pretrain_logs())} logs{_driving_time(store, splits.pretrain_logs())} "
        f"({len(splits.train)} training + {len(splits.pool)} unlabelled pool logs); no validation or test log",
        "label budgets": ", ".join(
            f"{k} = {v:g} of the training logs ({len(budget_logs(splits.train, v))} labelled)"
            for k, v in cfg.budgets.items()
        ),
        "runs per init and budget": f"{len(pretrain_seeds)} pre-training seed(s) x {len(cfg.seeds)} fine-tuning seeds",
        "DINO teachers": ", ".join(
            f"{_label(i)}: {'the oracle†' if i in ORACLE_INITS else 'dino_targets.teacher'}"
            for i in cfg.inits
            if i.startswith("gasp")
        )
        or "none (no GASP initialisation)",
        "test logs": len(splits.test),
        "test samples": first["samples"],
        "bootstrap": f"{bootstrap.replicates} replicates resampling test {bootstrap.unit}s and runs; "
        "percentile intervals",
    }
    summary = write_report(
        metrics, qualitative, out, cfg.inits, list(cfg.budgets), comparisons, extras, plot, bootstrap.level, zero_shot
    )
    flat: dict[str, float] = {}
    for task, s in summary["tasks"].items():
        for b in [*(b for b in cfg.budgets if b in s), *([ZERO_SHOT] if ZERO_SHOT in s else [])]:
            for init, d in s[b]["interval"].items():
                flat[f"{task}/{b}/{init}/{s['metric']}"] = d["estimate"]
            for pair, d in s[b]["pairs"].items():
                flat[f"{task}/{b}/{pair}/difference"] = d["difference"]
    return {k: (None if v is None or np.isnan(v) else round(float(v), 5)) for k, v in flat.items()}
