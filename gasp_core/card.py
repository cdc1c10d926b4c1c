"""Model cards: the ``README.md`` that every model folder carries (pre-trained, fine-tuned, the in-domain teacher).

A card says what the model is (variant or task), what it was trained on (dataset, embedded world or not, which
logs), with which image teacher (loudly when its weights are random), for how many steps with which seeds, its
metrics and how to load it: rows of facts, metrics and a snippet that loads the model (:func:`render`). Cards hold
no timings, so a rerun that rebuilds identical weights rebuilds an identical folder and DVC skips what depends on
it; the wall time goes to ``timing.json`` beside the card, which ``.dvcignore`` leaves out of DVC's hashes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
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


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def data_description(store_dir: Path | None, logs: list[str] | None) -> str:
    """``av2 store data/store (the embedded procedural world, from data/raw/av2): 4 logs: a, b, ...``."""
    if store_dir is None:
        return "unknown"
    manifest = _json(Path(store_dir) / "manifest.json")
    dataset = manifest.get("dataset", "unknown format")
    root = manifest.get("config", {}).get("root")
    embedded = root is not None and (Path(root) / "gasp_sim_manifest.json").is_file()
    origin = f"the embedded procedural world, from {root}" if embedded else f"real data from {root}"
    chosen = list(logs) if logs is not None else list(manifest.get("logs", []))
    return f"{dataset} store `{store_dir}` ({origin}): {len(chosen)} logs: " + ", ".join(f"`{x}`" for x in chosen)


def teacher_description(dino_dir: Path | None) -> tuple[str, str | None]:
    """(what the DINO targets were distilled from, a warning when the teacher's weights are random or the teacher is
    the oracle control)."""
    if dino_dir is None:
        return "not used (this variant has no DINO objective)", None
    info = _json(Path(dino_dir) / "teacher.json")
    if not info:
        return f"unknown (`{dino_dir}/teacher.json` is missing)", None
    text = f"`{info.get('model')}`, weights `{info.get('weights')}` (targets: `{dino_dir}`)"
    if info.get("model") == "oracle":
        return text, (
            "**The DINO targets come from the ORACLE teacher**: a fixed embedding of the simulator's surface class at "
            "each lidar point. It is a control for the embedded world (what a perfect foundation model would give), "
            "which real data cannot have; never a model to deploy or to compare with published GASP."
        )
    if info.get("random_weights"):
        return text, (
            "**The DINO teacher has RANDOM weights.** The distilled features carry no pre-trained semantics: this "
            "model's DINO objective is an ablation, not GASP as published. Give DINOv2 weights (`dino_targets."
            "teacher.weights`) or train the in-domain teacher (`teacher.enabled`) for a real run."
        )
    return text, None


def pretrain_card(
    out_dir: Path,
    name: str,
    var,
    cfg: Any,
    seed: int,
    store_dir: Path,
    dino_dir: Path | None,
    logs: list[str] | None,
    final: dict,
    steps: int,
    seconds: float | None,
) -> None:
    """The model card (README.md) of a pre-trained model folder."""
    tc = cfg.train
    objectives = [o for o in ("occupancy", "ego", "dino") if getattr(var, o)]
    teacher, warning = teacher_description(dino_dir)
    rows = [
        (
            "variant",
            f"`{name}`: " + (", ".join(objectives) if objectives else "no objective: the seeded initialisation"),
        ),
        (
            "options",
            {k: v for k, v in asdict(var).items() if k not in objectives and k not in ("occupancy", "ego", "dino")},
        ),
        ("seed", seed),
        ("data", data_description(store_dir, logs)),
        ("DINO teacher", teacher),
        ("encoder", f"`{cfg.model.encoder.backbone}` (timm), width {cfg.model.encoder.width}"),
        (
            "training",
            f"{steps} steps x batch {tc.batch_size} ({steps * tc.batch_size} samples), AdamW lr {tc.lr:g}, "
            f"warm-up {tc.warmup_steps} then cosine to 0, grad clip {tc.grad_clip:g}"
            if steps
            else "none (scratch: the encoder the from-scratch baseline fine-tunes)",
        ),
        # only the weights of this variant's own objectives: a sweep of another's (dino_weight for uno) must leave
        # this card, and so the model folder DVC hashes, unchanged
        ("loss weights", {k: v for k, v in asdict(cfg.loss).items() if k.startswith(tuple(objectives))} or "none"),
    ]
    usage = f"""from gasp_core import load_pretrained
model = load_pretrained("{out_dir}")  # safetensors + config.json
# or from the command line: gasp query --model {out_dir}"""
    text = render(f"Pre-trained BEV encoder: `{name}`, seed {seed}", rows, warning=warning, metrics=final, usage=usage)
    write_card(out_dir, text, seconds)


def finetune_card(
    path: Path, info: dict, encoder_dir: Path, task_doc: str, chosen: set[str], train_logs: int, seconds: float
) -> None:
    """The model card (README.md) of one fine-tuned run's folder."""
    cfg = info["config"]
    logs = info["labelled_logs"]
    rows = [
        ("task", f"`{info['task']}`: {task_doc}"),
        (
            "encoder",
            f"`{encoder_dir}` ({cfg['encoder']}; init `{info['init']}`, pre-training seed {info['pretrain_seed']}): "
            "its README.md says what it was pre-trained on and with which teacher",
        ),
        (
            "labels",
            f"budget `{info['budget']}` ({info['fraction']:g} of {train_logs} training logs): {len(logs)} logs, "
            f"{info['samples']} samples: " + ", ".join(f"`{x}`" for x in logs),
        ),
        ("seed", info["seed"]),
        (
            "training",
            f"{cfg['steps']} steps x batch {cfg['batch_size']}, AdamW lr {cfg['lr']:g} "
            f"(encoder {cfg['encoder_lr']:g}), warm-up {cfg['warmup_steps']} then cosine to 0; "
            f"training loss {info['loss_first']:.4g} -> "
            f"{info['loss_final']:.4g}",
        ),
    ]
    if info.get("selected_step"):
        rows.append(("model selection", f"best validation step per head: {info['selected_step']}"))
    metrics = {f"val {k}": v for k, v in info["val"].items() if v is not None and ("/" not in k or k in chosen)}
    usage = f"""from gasp_core.tasks.finetune import load_run, make_task
# task = make_task("{info["task"]}", TaskLabels(labels_dir), occupancy_dir, scene, finetune_cfg)
head, encoder = load_run(task, "{path}", "{encoder_dir}", "cpu")  # safetensors only
# test metrics of every run: metrics/evaluate/{info["task"]}.json and reports/README.md"""
    title = f"Fine-tuned `{info['task']}` head on `{info['init']}` (budget {info['budget']}, seed {info['seed']})"
    write_card(path, render(title, rows, warning=None, metrics=metrics, usage=usage), seconds)
