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

log = logging.getLogger(__name__)
LABELS = {"scratch": "scratch", "uno": "UnO", "gasp": "GASP"}
TASK_TITLES = {"forecast": "BEV semantic forecasting", "occupancy": "4D occupancy", "semantic_occupancy": "4D semantic occupancy",
               "map": "Map segmentation", "trajectory": "Ego trajectory"}
SECONDARY = {"forecast": ["softIoU", "AP/vehicle", "AP/pedestrian", "AP/cyclist"],
             "occupancy": ["IoU", "depth_L1_m", "depth_AbsRel"],
             "semantic_occupancy": ["mIoU", "AP/vehicle", "AP/pedestrian", "AP/cyclist"],
             "map": ["IoU/drivable_area", "IoU/ped_crossing", "IoU/lane_divider", "IoU/road_boundary"],
             "trajectory": ["l2_1s", "l2_2s", "l2_3s", "collision_rate", "L2_avg_constant_velocity"]}


def _fmt(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def ordering(results: dict, task: str, budget: str, chain: tuple[str, ...] = ("gasp", "uno", "scratch")) -> dict:
    """Whether each init beats the next in ``chain`` on the task's main metric: ``beyond spread`` when the
    difference of means exceeds both seed std devs, ``within spread`` when it is positive but smaller,
    ``reversed`` otherwise."""
    metric, better = MAIN_METRIC[task]
    sign = 1.0 if better == "higher" else -1.0
    out = {}
    for a, b in zip(chain, chain[1:]):
        if a not in results or b not in results:
            continue
        ma, mb = results[a][budget]["mean"][metric], results[b][budget]["mean"][metric]
        sa, sb = results[a][budget]["std"][metric], results[b][budget]["std"][metric]
        if ma is None or mb is None:
            out[f"{a}>{b}"] = "n/a"
            continue
        diff = sign * (ma - mb)
        out[f"{a}>{b}"] = "beyond spread" if diff > max(sa or 0.0, sb or 0.0) else ("within spread" if diff > 0 else "reversed")
    return out


def write_report(eval_metrics: dict[str, dict], qualitative: dict[str, dict], out: Path, inits: list[str], budgets: list[str],
                 extras: dict | None = None, plot_csv: Path | None = None) -> dict:
    """Tables, radar chart and figures into ``out``; returns the summary (also written as summary.json). The main
    metrics also go to ``plot_csv`` (a ``dvc plots`` file outside ``out``) when given."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in MAIN_METRIC if t in eval_metrics]
    summary: dict = {"tasks": {}, "inits": inits, "budgets": budgets}
    lines = ["# Downstream comparison: scratch vs UnO vs GASP pre-training", "",
             "Test split, mean ± std over fine-tuning seeds. Built by `dvc repro` (stage `report`).", ""]
    if extras:
        lines += [f"- {k}: {v}" for k, v in extras.items()] + [""]
    header = "| task (metric) | " + " | ".join(f"{LABELS.get(i, i)} ({b})" for b in budgets for i in inits) + " |"
    lines += ["## Main metric per task", "", header, "|" + "---|" * (1 + len(budgets) * len(inits))]
    csv_rows = ["task,budget,init,value"]
    for task in tasks:
        res = eval_metrics[task]["results"]
        metric, better = MAIN_METRIC[task]
        cells = []
        for b in budgets:
            for i in inits:
                r = res.get(i, {}).get(b)
                cells.append(_fmt(r["mean"][metric], r["std"][metric]) if r else "n/a")
                if r and r["mean"][metric] is not None:
                    csv_rows.append(f"{task},{b},{i},{r['mean'][metric]}")
        arrow = "↑" if better == "higher" else "↓"
        lines.append(f"| {TASK_TITLES[task]} ({metric} {arrow}) | " + " | ".join(cells) + " |")
        summary["tasks"][task] = {"metric": metric, "better": better,
                                  "ordering": {b: ordering(res, task, b) for b in budgets},
                                  "mean": {b: {i: res[i][b]["mean"][metric] for i in inits if i in res} for b in budgets},
                                  "std": {b: {i: res[i][b]["std"][metric] for i in inits if i in res} for b in budgets}}
    lines += ["", "## Does the paper's ordering hold? (GASP ≥ UnO ≥ scratch on the main metric)", "",
              "| task | budget | GASP vs UnO | UnO vs scratch |", "|---|---|---|---|"]
    for task in tasks:
        for b in budgets:
            o = summary["tasks"][task]["ordering"][b]
            lines.append(f"| {TASK_TITLES[task]} | {b} | {o.get('gasp>uno', 'n/a')} | {o.get('uno>scratch', 'n/a')} |")
    lines += ["", "*beyond spread*: the difference of means is larger than both seeds' standard deviations.", ""]
    lines += ["## Secondary metrics", ""]
    for task in tasks:
        res = eval_metrics[task]["results"]
        keys = [k for k in SECONDARY[task] if any(k in res[i][b]["mean"] for i in res for b in budgets)]
        lines += [f"### {TASK_TITLES[task]}", "", "| init | budget | " + " | ".join(keys) + " |", "|" + "---|" * (2 + len(keys))]
        for i in inits:
            for b in budgets:
                if i in res and b in res[i]:
                    r = res[i][b]
                    lines.append(f"| {LABELS.get(i, i)} | {b} | " + " | ".join(_fmt(r["mean"].get(k), r["std"].get(k)) for k in keys) + " |")
        lines.append("")
    figures = []
    figures.append(radar(summary, out / "radar.png"))
    for name, fn in (("forecast", _forecast_figure), ("map", _map_figure), ("trajectory", _trajectory_figure),
                     ("occupancy", _depth_figure), ("semantic_occupancy", _semantic_figure)):
        if name in qualitative and qualitative[name]:
            figures.append(fn(qualitative[name], out / f"{name}.png"))
    if "dino_bev" in qualitative:
        figures.append(_dino_figure(qualitative["dino_bev"], out / "dino_bev.png"))
    lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures if f is not None] + [""]
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    for csv in (out / "main_metrics.csv", plot_csv):
        if csv is not None:
            with atomic_path(Path(csv)) as tmp:
                tmp.write_text("\n".join(csv_rows) + "\n")
    return summary


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def radar(summary: dict, path: Path) -> Path:
    """One axis per task, each init's main metric relative to the best init on that axis (1 = best), as in the
    paper's radar summary; one panel per label budget."""
    tasks = list(summary["tasks"])
    budgets, inits = summary["budgets"], summary["inits"]
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    fig, axes = plt.subplots(1, len(budgets), subplot_kw={"polar": True}, figsize=(5 * len(budgets), 5))
    for ax, b in zip(np.atleast_1d(axes), budgets):
        for i in inits:
            vals = []
            for t in tasks:
                m = summary["tasks"][t]["mean"][b]
                present = [v for v in m.values() if v is not None]
                v = m.get(i)
                if v is None or not present:
                    vals.append(0.0)
                elif summary["tasks"][t]["better"] == "higher":
                    vals.append(v / max(present) if max(present) > 0 else 0.0)
                else:
                    vals.append(min(present) / v if v > 0 else 1.0)
            ax.plot(np.r_[angles, angles[:1]], np.r_[vals, vals[:1]], label=LABELS.get(i, i))
            ax.fill(np.r_[angles, angles[:1]], np.r_[vals, vals[:1]], alpha=0.1)
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{TASK_TITLES[t]}\n({summary['tasks'][t]['metric']})" for t in tasks], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{b} labels (1 = best init per task)")
    np.atleast_1d(axes)[0].legend(loc="lower left", bbox_to_anchor=(-0.2, -0.15))
    return _save(fig, path)


def _inits(q: dict) -> list[str]:
    return [i for i in ("scratch", "uno", "gasp") if i in q]


def _forecast_figure(q: dict, path: Path) -> Path:
    """Rows: ground truth, then each init; columns: forecast times. Colours: vehicle red, pedestrian green, cyclist blue."""
    inits = _inits(q)
    truth = q[inits[0]]["truth"].astype(float)
    times = q[inits[0]]["times"]
    rows = [("ground truth", truth)] + [(LABELS[i], q[i]["prob"]) for i in inits]
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
    rows = [("ground truth", q[inits[0]]["truth"].astype(float))] + [(LABELS[i], q[i]["prob"]) for i in inits]
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
        ax.plot(np.r_[0, p[:, 0]], np.r_[0, p[:, 1]], "-o", label=LABELS[i], alpha=0.8)
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
        ax.set_title(f"{LABELS[i]}: rendered vs true depth")
        ax.set_xlabel("true range (m)")
    axes[0, 0].set_ylabel("depth rendered through the field (m)")
    return _save(fig, path)


def _semantic_figure(q: dict, path: Path) -> Path:
    """Predicted class at t0, z = 0.75 m, per init, beside the boxes' BEV cover."""
    from matplotlib.colors import ListedColormap

    inits = _inits(q)
    classes = [str(c) for c in q[inits[0]]["classes"]]
    cmap = ListedColormap(["#f2f2f2", "#d62728", "#2ca02c", "#1f77b4", "#9467bd"][: len(classes)])
    panels = [("ground truth (box cover)", q[inits[0]]["truth"])] + [(LABELS[i], q[i]["pred"]) for i in inits]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, arr) in zip(axes, panels):
        ax.imshow(arr, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("4D semantic occupancy at t0, z = 0.75 m (grey background, red vehicle, green pedestrian, blue cyclist, "
                 "purple other)", fontsize=9)
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
    rgb = (rgb - np.percentile(rgb, 2, axis=0)) / (np.percentile(rgb, 98, axis=0) - np.percentile(rgb, 2, axis=0) + 1e-9)
    rgb = np.clip(rgb, 0, 1).reshape(*grid.shape, 3)
    z_bins = model.cfg.voxelizer.z_bins
    lidar = voxels[-z_bins:].max(0)  # the t0 sweep
    return {"rgb": rgb * (0.35 + 0.65 * lidar[..., None]), "lidar": lidar}


def build_report(metrics_dir: Path, eval_dir: Path, labels_dir: Path, out: Path, splits: SplitsConfig, cfg: FinetuneConfig,
                 plot: Path | None = None, gasp_model: Path | None = None) -> dict[str, float]:
    """The report stage: read every ``evaluate@<task>`` output (``metrics_dir/<task>.json``,
    ``eval_dir/<task>/qualitative.npz``), add GASP's DINO field in BEV when ``gasp_model`` has one, write the
    report to ``out``; returns the main metric per task / budget / init, flat, for DVC's metrics."""
    from gasp_core.models.gasp_model import load_pretrained
    from gasp_core.tasks.build import TaskLabels
    from gasp_core.tasks.finetune import load_qualitative

    metrics, qualitative = {}, {}
    for task in cfg.tasks:
        path = Path(metrics_dir) / f"{task}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the evaluate@{task} stage first")
        metrics[task] = json.loads(path.read_text())
        q = load_qualitative(Path(eval_dir) / task / "qualitative.npz")
        if q:
            qualitative[task] = q
    if gasp_model is not None and (Path(gasp_model) / "config.json").is_file():
        model = load_pretrained(gasp_model)
        if model.dino is not None:
            voxels = TaskLabels(labels_dir).log(splits.test[0])["voxels"][0]
            qualitative["dino_bev"] = dino_bev(model, voxels)
    extras = {"encoder": cfg.encoder,
              "label budgets": ", ".join(f"{k} = {v:g} of the training logs" for k, v in cfg.budgets.items()),
              "seeds": len(cfg.seeds), "test logs": len(splits.test), "test samples": metrics[cfg.tasks[0]]["samples"]}
    summary = write_report(metrics, qualitative, out, cfg.inits, list(cfg.budgets), extras, plot)
    return {f"{task}/{b}/{init}/{s['metric']}": v
            for task, s in summary["tasks"].items() for b, per in s["mean"].items() for init, v in per.items()}
