"""Stage ``report``: the scratch / UnO / GASP comparison as a markdown table, a radar chart and qualitative figures.

Reads the ``evaluate`` stages' metrics (test split) and predictions; writes ``<out>/README.md`` (tables, with
whether the paper's ordering GASP >= UnO >= scratch held per task and budget), ``summary.json``,
``main_metrics.csv`` (for ``dvc plots``) and PNG figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gasp_core.io import atomic_path  # noqa: E402
from gasp_core.tasks.config import MAIN_METRIC, FinetuneConfig, SplitsConfig  # noqa: E402
from gasp_core.tasks.evaluation import BASELINE  # noqa: E402
from gasp_core.tasks.stats import Bootstrap, BootstrapConfig  # noqa: E402

log = logging.getLogger(__name__)
LABELS = {"scratch": "scratch", "uno": "UnO", "uno_enhanced": "UnO+", "gasp": "GASP"}
TASK_TITLES = {
    "forecast": "BEV semantic forecasting",
    "occupancy": "4D occupancy",
    "semantic_occupancy": "4D semantic occupancy",
    "map": "Map segmentation",
    "trajectory": "Ego trajectory",
}
METRIC_TITLES = {
    "AP/vehicle": "vehicle AP",
    "AP": "AP, future lidar queries",
    "mAP": "mAP",
    "mIoU": "mIoU: crossings, dividers, boundaries",
    "L2_avg": "L2 avg 1-3 s, with odometry, m",
}
SECONDARY = {
    "forecast": ["softIoU/vehicle", "AP/pedestrian", "AP/cyclist", "mAP", "softIoU"],
    "occupancy": [
        "IoU",
        "AP/1s",
        "AP/2s",
        "AP/3s",
        "IoU/1s",
        "IoU/2s",
        "IoU/3s",
        "depth_L1_m",
        "depth_AbsRel",
        "free_rate/missing",
    ],
    "semantic_occupancy": ["mIoU", "AP/vehicle", "AP/pedestrian", "AP/cyclist", "AP/other"],
    "map": ["IoU/drivable_area", "IoU/ped_crossing", "IoU/lane_divider", "IoU/road_boundary"],
    "trajectory": [
        "l2_1s",
        "l2_2s",
        "l2_3s",
        "collision_1s",
        "collision_2s",
        "collision_3s",
        "L2_avg/no_odometry",
        "l2_3s/no_odometry",
        "collision_3s/no_odometry",
    ],
}


def _label(init: str) -> str:
    return LABELS.get(init, init)


def _fmt(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


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


def comparison_pairs(inits: list[str]) -> list[tuple[str, str]]:
    """Each initialisation against the one below it on the ladder (``inits`` lists weakest first), and the paper's
    two comparisons, GASP vs UnO and UnO vs scratch, when present."""
    chain = list(reversed(inits))
    pairs = list(zip(chain, chain[1:]))
    for pair in (("gasp", "uno"), ("uno", "scratch")):
        if pair[0] in inits and pair[1] in inits and pair not in pairs:
            pairs.append(pair)
    return pairs


def compare(
    task: str, stats: dict, groups: np.ndarray, inits: list[str], budgets: list[str], fn, cfg: BootstrapConfig
) -> dict:
    """Per budget: each init's main-metric interval, the paired differences of :func:`comparison_pairs`, and each init
    against the non-learned baseline (when the task has one), from the evaluate stage's per-sample statistics."""
    better = MAIN_METRIC[task][1] == "higher"
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
                res["pairs"][f"{a}>{c}"] = boot.difference(runs[a], runs[c], fn, better)
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
) -> dict:
    """Tables, radar chart and figures into ``out``; returns the summary (also written as summary.json). The main
    metrics also go to ``plot_csv`` (a ``dvc plots`` file outside ``out``) when given. ``comparisons[task]`` is what
    :func:`compare` gives."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in MAIN_METRIC if t in eval_metrics]
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
    has_base = any("baseline" in comparisons[t][b] for t in tasks for b in budgets)
    header = "| task (metric) | " + " | ".join(f"{_label(i)} ({b})" for b in budgets for i in inits)
    header += " | non-learned baseline |" if has_base else " |"
    lines += ["## Main metric per task", "", header, "|" + "---|" * (1 + len(budgets) * len(inits) + has_base)]
    csv_rows = ["task,budget,init,value"]
    for task in tasks:
        metric, better = MAIN_METRIC[task]
        cmp = comparisons[task]
        cells = [_fmt_ci(cmp[b]["interval"].get(i)) for b in budgets for i in inits]
        for b in budgets:
            for i, d in cmp[b]["interval"].items():
                if d["estimate"] is not None and not np.isnan(d["estimate"]):
                    csv_rows.append(f"{task},{b},{i},{d['estimate']}")
        if has_base:
            cells.append(_fmt_ci(cmp[budgets[0]].get("baseline")))
        arrow = "↑" if better == "higher" else "↓"
        lines.append(
            f"| {TASK_TITLES[task]} ({METRIC_TITLES.get(metric, metric)} {arrow}) | " + " | ".join(cells) + " |"
        )
        summary["tasks"][task] = {"metric": metric, "better": better, **{b: cmp[b] for b in budgets}}
    pairs = [p for p in comparison_pairs(inits)]
    lines += [
        "",
        f"## Does the paper's ordering hold? Paired differences of the main metric, {pct} intervals",
        "",
        "Positive = the first is better (for L2, lower). *better* / *worse*: the interval excludes 0; *inconclusive*: "
        "it does not.",
        "",
        "| task | budget | " + " | ".join(f"{_label(a)} vs {_label(c)}" for a, c in pairs) + " |",
        "|---|---|" + "---|" * len(pairs),
    ]
    for task in tasks:
        for b in budgets:
            cells = []
            for a, c in pairs:
                d = comparisons[task][b]["pairs"].get(f"{a}>{c}")
                cells.append(f"{_fmt_ci(d, signed=True)} **{d['verdict']}**" if d else "n/a")
            lines.append(f"| {TASK_TITLES[task]} | {b} | " + " | ".join(cells) + " |")
    if has_base:
        lines += [
            "",
            "### Against the non-learned baseline (constant velocity; occupancy persisting from the last input sweep)",
            "",
            "| task | budget | " + " | ".join(f"{_label(i)} vs baseline" for i in inits) + " |",
            "|---|---|" + "---|" * len(inits),
        ]
        for task in tasks:
            for b in budgets:
                vs = comparisons[task][b]["vs_baseline"]
                if vs:
                    lines.append(
                        f"| {TASK_TITLES[task]} | {b} | "
                        + " | ".join(
                            f"{_fmt_ci(vs[i], signed=True)} **{vs[i]['verdict']}**" if i in vs else "n/a" for i in inits
                        )
                        + " |"
                    )
    lines += ["", "## Secondary metrics (mean ± std over runs)", ""]
    for task in tasks:
        res = eval_metrics[task]["results"]
        base = eval_metrics[task].get("baseline")
        keys = [k for k in SECONDARY[task] if any(k in res[i][b]["mean"] for i in res for b in budgets)]
        lines += [
            f"### {TASK_TITLES[task]}",
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
    figures = [radar(summary, out / "radar.png")]
    for name, fn in (
        ("forecast", _forecast_figure),
        ("map", _map_figure),
        ("trajectory", _trajectory_figure),
        ("occupancy", _depth_figure),
        ("semantic_occupancy", _semantic_figure),
    ):
        if name in qualitative and qualitative[name]:
            figures.append(fn(qualitative[name], out / f"{name}.png"))
    if "dino_bev" in qualitative:
        figures.append(_dino_figure(qualitative["dino_bev"], out / "dino_bev.png"))
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


def _rounded(x, digits: int = 5):
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    if isinstance(x, float):
        return None if np.isnan(x) else round(x, digits)
    return x


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def radar(summary: dict, path: Path) -> Path:
    """One axis per task, each init's main metric relative to the best init on that axis (1 = best), as in the
    paper's radar summary, with its bootstrap interval as a band; one panel per label budget."""
    tasks = list(summary["tasks"])
    budgets, inits = summary["budgets"], summary["inits"]
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    fig, axes = plt.subplots(1, len(budgets), subplot_kw={"polar": True}, figsize=(5 * len(budgets), 5))
    for ax, b in zip(np.atleast_1d(axes), budgets):
        for i in inits:
            rel = {k: [] for k in ("estimate", "low", "high")}
            for t in tasks:
                ivals = summary["tasks"][t][b]["interval"]
                present = [
                    d["estimate"] for d in ivals.values() if d["estimate"] is not None and not np.isnan(d["estimate"])
                ]
                d = ivals.get(i)
                for k in rel:
                    v = None if d is None else d[k]
                    if v is None or np.isnan(v) or not present:
                        rel[k].append(0.0)
                    elif summary["tasks"][t]["better"] == "higher":
                        rel[k].append(v / max(present) if max(present) > 0 else 0.0)
                    else:
                        rel[k].append(min(present) / v if v > 0 else 1.0)
            ring = np.r_[angles, angles[:1]]
            (line,) = ax.plot(ring, np.r_[rel["estimate"], rel["estimate"][:1]], label=_label(i))
            lo, hi = np.minimum(rel["low"], rel["high"]), np.maximum(rel["low"], rel["high"])
            ax.fill_between(ring, np.r_[lo, lo[:1]], np.r_[hi, hi[:1]], color=line.get_color(), alpha=0.15)
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{TASK_TITLES[t]}\n({summary['tasks'][t]['metric']})" for t in tasks], fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(f"{b} labels (1 = best init per task; bands: {100 * summary['level']:g}% intervals)", fontsize=9)
    np.atleast_1d(axes)[0].legend(loc="lower left", bbox_to_anchor=(-0.2, -0.15))
    return _save(fig, path)


def _inits(q: dict) -> list[str]:
    return list(q)


def _forecast_figure(q: dict, path: Path) -> Path:
    """Rows: ground truth, then each init; columns: forecast times. Colours: vehicle red, pedestrian green, cyclist
    blue."""
    inits = _inits(q)
    truth = q[inits[0]]["truth"].astype(float)
    times = q[inits[0]]["times"]
    rows = [("ground truth", truth)] + [(_label(i), q[i]["prob"]) for i in inits]
    fig, axes = plt.subplots(len(rows), len(times), figsize=(2.6 * len(times), 2.6 * len(rows)), squeeze=False)
    for r, (name, arr) in enumerate(rows):
        for c, t in enumerate(times):
            axes[r, c].imshow(np.clip(arr[c].transpose(1, 2, 0), 0, 1), origin="lower")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"t = {t:g} s")
        axes[r, 0].set_ylabel(name)
    fig.suptitle("BEV semantic forecast (red vehicle, green pedestrian, blue cyclist), first test sample")
    return _save(fig, path)


def _map_figure(q: dict, path: Path) -> Path:
    inits = _inits(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    rows = [("ground truth", q[inits[0]]["truth"].astype(float))] + [(_label(i), q[i]["prob"]) for i in inits]
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(2.6 * len(classes), 2.6 * len(rows)), squeeze=False)
    for r, (name, arr) in enumerate(rows):
        for c, cls in enumerate(classes):
            axes[r, c].imshow(arr[c], origin="lower", vmin=0, vmax=1, cmap="magma")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(cls)
        axes[r, 0].set_ylabel(name)
    fig.suptitle("Map segmentation: predicted probability vs ground truth, first test sample")
    return _save(fig, path)


def _trajectory_figure(q: dict, path: Path) -> Path:
    inits = _inits(q)
    fig, ax = plt.subplots(figsize=(5, 5))
    true = q[inits[0]]["true"]
    ax.plot(np.r_[0, true[:, 0]], np.r_[0, true[:, 1]], "k-o", label="ground truth", zorder=5)
    cv = q[inits[0]].get("constant_velocity")
    if cv is not None:
        ax.plot(np.r_[0, cv[:, 0]], np.r_[0, cv[:, 1]], "k:", label="constant velocity")
    for i in inits:
        p = q[i]["pred"]
        (line,) = ax.plot(np.r_[0, p[:, 0]], np.r_[0, p[:, 1]], "-o", label=f"{_label(i)} (odometry)", alpha=0.8)
        if "pred_no_odometry" in q[i]:
            p = q[i]["pred_no_odometry"]
            ax.plot(
                np.r_[0, p[:, 0]],
                np.r_[0, p[:, 1]],
                "--x",
                color=line.get_color(),
                label=f"{_label(i)} (no odometry)",
                alpha=0.6,
            )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m, t0 frame)")
    ax.set_ylabel("y (m)")
    ax.legend()
    ax.set_title("Ego waypoints 0.5-3 s, first test sample")
    return _save(fig, path)


def _depth_figure(q: dict, path: Path) -> Path:
    inits = _inits(q)
    fig, axes = plt.subplots(1, len(inits), figsize=(4 * len(inits), 4), squeeze=False)
    for ax, i in zip(axes[0], inits):
        ax.scatter(q[i]["true_depth"], q[i]["depth"], s=6)
        hi = float(max(q[i]["true_depth"].max(), q[i]["depth"].max()))
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_title(f"{_label(i)}: rendered vs true depth")
        ax.set_xlabel("true range (m)")
    axes[0, 0].set_ylabel("depth rendered through the field (m)")
    return _save(fig, path)


def _semantic_figure(q: dict, path: Path) -> Path:
    """Predicted class at t0, z = 0.75 m, per init, beside the boxes' BEV cover."""
    from matplotlib.colors import ListedColormap

    inits = _inits(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    cmap = ListedColormap(["#f2f2f2", "#d62728", "#2ca02c", "#1f77b4", "#9467bd"][: len(classes)])
    panels = [("ground truth (box cover)", q[inits[0]]["truth"])] + [(_label(i), q[i]["pred"]) for i in inits]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, arr) in zip(axes, panels):
        ax.imshow(arr, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "4D semantic occupancy at t0, z = 0.75 m (grey background, red vehicle, green pedestrian, blue cyclist, "
        "purple other)",
        fontsize=9,
    )
    return _save(fig, path)


def _dino_figure(q: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(q["lidar"], origin="lower", cmap="gray_r")
    axes[0].set_title("input: lidar at t0 (BEV)")
    axes[1].imshow(q["rgb"], origin="lower")
    axes[1].set_title("GASP's predicted DINO field at t0, z = 1 m (PCA → RGB)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def dino_bev(model, voxels: np.ndarray, z_m: float = 1.0) -> dict:
    """The GASP model's DINO field over the BEV grid at t0 and height ``z_m``, as PCA colours (cells without
    lidar returns at t0 are dimmed), and the t0 sweep's BEV occupancy."""
    import torch

    from gasp_core.tasks.bev import BevGrid

    scene = model.scene
    res = model.cfg.voxelizer.voxel_size_m
    grid = BevGrid(tuple(scene.extent_m[:4]), res)
    xy = grid.centres()
    q = np.column_stack([xy, np.full(len(xy), z_m), np.zeros(len(xy))]).astype(np.float32)
    with torch.no_grad():
        vox = torch.from_numpy(voxels[None].astype(np.float32))
        out = model(vox, dino_q=torch.from_numpy(q)[None])
    feats = out["dino"][0].numpy()
    f = feats - feats.mean(0)
    _, _, vt = np.linalg.svd(f[:: max(1, len(f) // 4000)], full_matrices=False)
    rgb = f @ vt[:3].T
    rgb = (rgb - np.percentile(rgb, 2, axis=0)) / (
        np.percentile(rgb, 98, axis=0) - np.percentile(rgb, 2, axis=0) + 1e-9
    )
    rgb = np.clip(rgb, 0, 1).reshape(*grid.shape, 3)
    z_bins = model.cfg.voxelizer.z_bins
    lidar = voxels[-z_bins:].max(0)  # the t0 sweep
    return {"rgb": rgb * (0.35 + 0.65 * lidar[..., None]), "lidar": lidar}


def build_report(
    metrics_dir: Path,
    eval_dir: Path,
    labels_dir: Path,
    out: Path,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    plot: Path | None = None,
    gasp_model: Path | None = None,
    pretrain_seeds: list[int] = (0,),
    bootstrap: BootstrapConfig | None = None,
) -> dict[str, float]:
    """The report stage: read every ``evaluate@<task>`` output (``metrics_dir/<task>.json``,
    ``eval_dir/<task>/{qualitative,stats}.npz``), bootstrap the intervals, add GASP's DINO field in BEV when
    ``gasp_model`` (the variant's folder; its first pre-training seed is drawn) has one, write the report to ``out``;
    returns the main metric and the paired differences per task / budget, flat, for DVC's metrics."""
    from gasp_core.models.gasp_model import load_pretrained
    from gasp_core.tasks.build import TaskLabels
    from gasp_core.tasks.evaluation import load_arrays, load_qualitative, split_stats
    from gasp_core.tasks.finetune import TASK_CLASSES

    bootstrap = bootstrap or BootstrapConfig()
    metrics, qualitative, comparisons = {}, {}, {}
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
            TASK_CLASSES[task].main_from_stats,
            bootstrap,
        )
        log.info("%s: bootstrap intervals done", task)
    model_dir = Path(gasp_model) / f"seed_{pretrain_seeds[0]}" if gasp_model is not None else None
    if model_dir is not None and (model_dir / "config.json").is_file():
        model = load_pretrained(model_dir)
        if model.dino is not None:
            voxels = TaskLabels(labels_dir).log(splits.test[0])["voxels"][0]
            qualitative["dino_bev"] = dino_bev(model, voxels)
    first = metrics[cfg.tasks[0]]
    extras = {
        "encoder": cfg.encoder,
        "label budgets": ", ".join(f"{k} = {v:g} of the training logs" for k, v in cfg.budgets.items()),
        "runs per init and budget": f"{len(pretrain_seeds)} pre-training seed(s) x {len(cfg.seeds)} fine-tuning seeds",
        "test logs": len(splits.test),
        "test samples": first["samples"],
        "bootstrap": f"{bootstrap.replicates} replicates resampling test {bootstrap.unit}s and runs; "
        "percentile intervals",
    }
    summary = write_report(
        metrics, qualitative, out, cfg.inits, list(cfg.budgets), comparisons, extras, plot, bootstrap.level
    )
    flat: dict[str, float] = {}
    for task, s in summary["tasks"].items():
        for b in cfg.budgets:
            for init, d in s[b]["interval"].items():
                flat[f"{task}/{b}/{init}/{s['metric']}"] = d["estimate"]
            for pair, d in s[b]["pairs"].items():
                flat[f"{task}/{b}/{pair}/difference"] = d["difference"]
    return {k: (None if v is None or np.isnan(v) else round(float(v), 5)) for k, v in flat.items()}
