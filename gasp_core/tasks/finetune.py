"""Fine-tuning heads (and optionally the encoder) for the downstream tasks.

The tasks live one per package (``forecast``, ``occupancy``, ``semantic_occupancy``, ``map``, ``trajectory``, on
:class:`gasp_core.tasks.base.Task`, listed in :mod:`gasp_core.tasks.registry`); this module holds the frozen-feature
cache, the training loop with model selection on validation, the fine-tuning curves and the run folders.
:func:`finetune` trains every (label budget, seed) run of one (task, initialisation) pair;
:mod:`gasp_core.tasks.evaluation` scores them."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gasp_core import card
from gasp_core.data.samples import SceneConfig
from gasp_core.io import atomic_path, write_json_atomic
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.optim import run_steps, warmup_cosine
from gasp_core.progress import progress as progress_bar
from gasp_core.tasks.base import Item, Task, to_tensor
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig
from gasp_core.tasks.registry import make_task
from gasp_core.teacher.dinov2 import resolve_device

log = logging.getLogger(__name__)


def budget_logs(train_logs: list[str], fraction: float) -> list[str]:
    """The labelled training logs of a budget: the first max(1, round(fraction * n)) of a fixed shuffle, so
    smaller budgets are subsets of larger ones and every seed and initialisation sees the same labels."""
    order = [train_logs[i] for i in np.random.default_rng(0).permutation(len(train_logs))]
    return order[: max(1, int(round(fraction * len(order))))]


def items_of(labels: TaskLabels, logs: list[str]) -> list[Item]:
    return [(lid, s) for lid in logs for s in range(labels.manifest["logs"][lid])]


class Features:
    """BEV features of samples: computed once by a frozen encoder, or live from a trainable one."""

    def __init__(self, encoder: nn.Module, labels: TaskLabels, device: torch.device, frozen: bool) -> None:
        self.encoder, self.labels, self.device, self.frozen = encoder, labels, device, frozen
        self._cache: dict[Item, Tensor] = {}

    def voxels(self, items: list[Item]) -> Tensor:
        return to_tensor(np.stack([self.labels.log(lid)["voxels"][s] for lid, s in items]), self.device)

    def __call__(self, items: list[Item]) -> Tensor:
        if not self.frozen and self.encoder.training:
            return self.encoder(self.voxels(items))
        missing = [it for it in items if it not in self._cache or not self.frozen]
        if missing:
            with torch.no_grad():  # plain tensors: the heads save them for their backward pass
                for i in range(0, len(missing), 8):
                    chunk = missing[i : i + 8]
                    for it, f in zip(chunk, self.encoder(self.voxels(chunk))):
                        self._cache[it] = f.clone()
        out = torch.stack([self._cache[it] for it in items])
        if not self.frozen:
            self._cache.clear()
        return out


def load_encoder(init_dir: Path, device: torch.device) -> nn.Module:
    """The BEV encoder of a pre-trained (or ``scratch``: seeded, untrained) model folder."""
    return load_pretrained(init_dir, device).encoder


def train_run(
    task: Task,
    encoder_dir: Path,
    items: list[Item],
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    features: Features | None = None,
    val_items: list[Item] | None = None,
    encoder_lr: float | None = None,
) -> tuple[nn.Module, nn.Module, list[float], dict]:
    """One fine-tuning run: returns (head, encoder, per-step losses, model selection record). With a frozen encoder,
    ``features`` (shared across runs of the same initialisation) caches the BEV features.

    With ``cfg.val_every[task]`` steps and ``val_items``, the head is scored on validation before the first step,
    every that many steps and at the end; each part of ``task.selection`` keeps its best state (ties go to the
    later step), so a head that starts as a baseline (trajectory: constant velocity) never ends worse than it on
    validation. With ``encoder: full`` the encoder follows the first part's choice and trains at ``encoder_lr``
    (default ``cfg.encoder_lr``)."""
    torch.manual_seed(seed)
    frozen = cfg.encoder == "frozen"
    if features is None or not frozen:
        features = Features(load_encoder(encoder_dir, device), task.labels, device, frozen)
    encoder = features.encoder
    encoder.train(not frozen)
    encoder.requires_grad_(not frozen)
    head = task.head(_feat_dim(encoder)).to(device)
    params = list(head.parameters()) + ([] if frozen else list(encoder.parameters()))
    groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
    if not frozen:
        lr = cfg.encoder_lr if encoder_lr is None else encoder_lr
        groups.append({"params": list(encoder.parameters()), "lr": lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup_steps, cfg.steps)
    rng = np.random.default_rng([seed, 1])
    every = int(cfg.val_every.get(task.name, 0)) if val_items else 0
    best: dict[str, tuple[float, dict, int]] = {}
    history: list[dict] = []
    val_features = features if frozen else Features(encoder, task.labels, device, False)
    first_part = next(iter(task.selection))

    def validate(step: int) -> None:
        head.eval()
        encoder.eval()
        ev = task.evaluate(head, val_features, val_items)
        record = {"step": step, "loss": _val_loss(task, head, val_features, val_items, cfg.batch_size)}
        head.train()
        encoder.train(not frozen)
        for part, (metric, better) in task.selection.items():
            value = ev.metrics.get(metric)
            record[metric] = value
            if value is None or math.isnan(value):
                continue
            score = value if better == "higher" else -value
            if part not in best or score >= best[part][0]:
                module = head if part == "" else getattr(head, part)
                state = {"head": copy.deepcopy(module.state_dict())}
                if not frozen and part == first_part:
                    state["encoder"] = copy.deepcopy(encoder.state_dict())
                best[part] = (score, state, step)
        history.append(record)

    losses: list[float] = []

    def draws():  # one batch at a time: the draws and the loss's queries interleave on ``rng`` as they always have
        for _ in range(cfg.steps):
            yield [items[i] for i in rng.integers(len(items), size=cfg.batch_size)]

    def on_step(step: int, loss: dict, lr: float) -> None:
        losses.append(loss["total"].item())
        if every and ((step + 1) % every == 0 or step + 1 == cfg.steps):
            validate(step + 1)

    if every:
        validate(0)
    run_steps(
        draws(),
        lambda batch: {"total": task.loss(head, features(batch), batch, rng)},
        opt,
        sched,
        params,
        grad_clip=1.0,
        device=device,
        on_step=on_step,
    )
    for part, (_, state, _) in best.items():
        (head if part == "" else getattr(head, part)).load_state_dict(state["head"])
        if "encoder" in state:
            encoder.load_state_dict(state["encoder"])
    head.eval()
    encoder.eval()
    selection = (
        {"selected_step": {part or "head": step for part, (_, _, step) in best.items()}, "history": history}
        if every
        else {}
    )
    return head, encoder, losses, selection


def choose_encoder_lr(
    task: Task,
    init: str,
    encoder_dir: Path,
    items: list[Item],
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    val_items: list[Item],
) -> tuple[float, dict[str, float | None]]:
    """The encoder learning rate of ``init``'s runs: ``cfg.encoder_lr`` unless ``cfg.encoder_lrs`` lists candidates
    (and the encoder trains); then the candidate whose run (this seed) scores best on validation by the task's first
    selection metric, or by the validation loss where that metric is undefined for every candidate (ties to the
    earlier candidate). Returns the rate and each candidate's validation scores."""
    candidates = [float(x) for x in cfg.encoder_lrs.get(init, [])]
    if cfg.encoder == "frozen" or not candidates:
        return cfg.encoder_lr, {}
    metric, better = next(iter(task.selection.values()))
    scores: dict[str, dict[str, float | None]] = {}
    for lr in candidates:
        head, encoder, _, _ = train_run(task, encoder_dir, items, cfg, seed, device, None, val_items, lr)
        features = Features(encoder, task.labels, device, True)
        value = task.evaluate(head, features, val_items).metrics.get(metric)
        scores[f"{lr:g}"] = {
            metric: None if value is None or math.isnan(value) else round(float(value), 5),
            "loss": round(_val_loss(task, head, features, val_items, cfg.batch_size), 5),
        }
    by_metric = all(v[metric] is not None for v in scores.values())
    key, sign = (metric, 1.0 if better == "higher" else -1.0) if by_metric else ("loss", -1.0)
    chosen = max(candidates, key=lambda lr: (sign * scores[f"{lr:g}"][key], -candidates.index(lr)))
    log.info("%s/%s: encoder lr %g chosen on validation %s (%s)", task.name, init, chosen, key, scores)
    return chosen, scores


def _val_loss(task: Task, head: nn.Module, features: Features, items: list[Item], batch_size: int) -> float:
    """The training loss on validation samples, on the same queries at every call (a fixed generator of its own:
    the training draws are untouched), for the fine-tuning curves."""
    rng = np.random.default_rng([0, 2])
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            batch = items[i : i + batch_size]
            total += float(task.loss(head, features(batch), batch, rng)) * len(batch)
            n += len(batch)
    return total / max(n, 1)


def write_curves(live, prefix: str, losses: list[float], history: list[dict]) -> None:
    """One run's fine-tuning curves into a dvclive ``Live``: ``<prefix>/train_loss`` every step and, at each
    validation, ``<prefix>/val_loss`` and the selection metrics (``<prefix>/val_<metric>``). A metric whose name is
    the parent of another's (trajectory: ``L2_avg`` and ``L2_avg/no_odometry``) is logged as ``<metric>/main``:
    dvclive nests names at ``/`` and one name cannot be both a value and a folder."""
    at = {int(r["step"]): r for r in history}
    keys = {k for r in history for k in r}
    name = {k: f"{k}/main" if any(o.startswith(k + "/") for o in keys) else k for k in keys}
    for step in range(len(losses) + 1):
        live.step = step
        if step:
            live.log_metric(f"{prefix}/train_loss", losses[step - 1], timestamp=False)
        for key, value in at.get(step, {}).items():
            if key != "step" and value is not None and math.isfinite(value):
                live.log_metric(f"{prefix}/val_{name[key]}", value, timestamp=False)


def _feat_dim(encoder: nn.Module) -> int:
    return encoder.lateral[0].out_channels


def pretrained_dir(init_dir: Path, pretrain_seed: int) -> Path:
    """The model folder of one pre-training seed of an initialisation (``models/pretrain/<init>/seed_<p>``)."""
    return Path(init_dir) / f"seed_{pretrain_seed}"


def run_name(pretrain_seed: int, seed: int) -> str:
    return f"pretrain_{pretrain_seed}/seed_{seed}"


def run_dir(root: Path, budget: str, pretrain_seed: int, seed: int) -> Path:
    return Path(root) / budget / run_name(pretrain_seed, seed)


def save_run(path: Path, head: nn.Module, encoder: nn.Module | None, info: dict) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "head.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp))
    if encoder is not None:
        with atomic_path(path / "encoder.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    write_json_atomic(path / "run.json", info)


def load_run(task: Task, path: Path, encoder_dir: Path, device: torch.device) -> tuple[nn.Module, nn.Module | None]:
    """A saved run's head and, when it fine-tuned the encoder, its encoder (safetensors only)."""
    from safetensors.torch import load_file

    if not (path / "head.safetensors").is_file():
        raise FileNotFoundError(f"{path / 'head.safetensors'} is missing: run the finetune stage first")
    encoder = None
    if (path / "encoder.safetensors").is_file():
        encoder = load_encoder(encoder_dir, device)
        encoder.load_state_dict(load_file(str(path / "encoder.safetensors")))
        encoder.eval()
    head = task.head(json.loads((path / "run.json").read_text())["feat_dim"]).to(device)
    head.load_state_dict(load_file(str(path / "head.safetensors")))
    return head.eval(), encoder


def finetune(
    task_name: str,
    init: str,
    *,
    labels_dir: Path,
    occupancy_dir: Path,
    init_dir: Path,
    out_dir: Path,
    scene: SceneConfig,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    pretrain_seeds: list[int] = (0,),
    progress: bool = True,
    live_dir: Path | None = None,
) -> dict:
    """Every (pre-training seed, budget, seed) run of one task and initialisation (``init_dir/seed_<p>`` holds
    pre-training seed p); saves heads under ``out_dir`` and returns metrics: the first and final training loss
    and the validation metrics of each run. With ``live_dir``, each run's curves (training loss per step,
    validation loss and metrics at each validation) go to a dvclive log there, one plot per run and quantity
    (``<budget>/pretrain_<p>/seed_<s>/train_loss``...)."""
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    val_items = items_of(labels, splits.val)
    result: dict = {"task": task_name, "init": init, "encoder": cfg.encoder, "runs": {}}
    if task_name in cfg.zero_shot_only:
        if not task.has_zero_shot():
            raise ValueError(f"finetune.zero_shot_only: task {task_name!r} has no zero-shot protocol; train its heads")
        Path(out_dir).mkdir(parents=True, exist_ok=True)  # the stage's output: no runs, the task is scored zero-shot
        (Path(out_dir) / "README.md").write_text(
            f"# {task_name} / {init}: no head trained\n\n`finetune.zero_shot_only` lists {task_name}: the evaluate "
            "stage scores each pre-trained model's own decoder instead.\n"
        )
        if live is not None:  # the stage's dvclive outputs exist for every task: no run, no step trained
            live.log_metric("heads_trained", 0, timestamp=False)
            live.end()
        return {**result, "zero_shot_only": True}
    encoder_lrs: dict[str, tuple[float, dict]] = {}
    bar = progress_bar(
        total=len(pretrain_seeds) * len(cfg.budgets) * len(cfg.seeds),
        desc=f"finetune {task_name}/{init}",
        unit="run",
        disable=not progress,
    )
    for p in pretrain_seeds:
        encoder_dir = pretrained_dir(init_dir, p)
        shared = Features(load_encoder(encoder_dir, device), labels, device, True) if cfg.encoder == "frozen" else None
        for budget, fraction in cfg.budgets.items():
            logs = budget_logs(splits.train, fraction)
            items = items_of(labels, logs)
            if budget not in encoder_lrs:  # chosen once per budget, on the first pre-training seed
                encoder_lrs[budget] = choose_encoder_lr(
                    task, init, pretrained_dir(init_dir, pretrain_seeds[0]), items, cfg, cfg.seeds[0], device, val_items
                )
            encoder_lr = encoder_lrs[budget][0]
            for seed in cfg.seeds:
                start = time.perf_counter()
                head, encoder, losses, selection = train_run(
                    task, encoder_dir, items, cfg, seed, device, shared, val_items, encoder_lr
                )
                val = task.evaluate(
                    head, shared if shared is not None else Features(encoder, labels, device, True), val_items
                ).metrics
                info = {
                    "task": task_name,
                    "init": init,
                    "pretrain_seed": p,
                    "budget": budget,
                    "fraction": fraction,
                    "seed": seed,
                    "labelled_logs": logs,
                    "samples": len(items),
                    **({} if cfg.encoder == "frozen" else {"encoder_lr": encoder_lr}),
                    "feat_dim": _feat_dim(encoder),
                    "loss_first": losses[0],
                    "loss_final": float(np.mean(losses[-10:])),
                    "val": val,
                    **selection,
                    "config": asdict(cfg),
                }
                save_run(run_dir(out_dir, budget, p, seed), head, None if cfg.encoder == "frozen" else encoder, info)
                card.finetune_card(
                    run_dir(out_dir, budget, p, seed),
                    info,
                    encoder_dir,
                    (type(task).__doc__ or "").strip().splitlines()[0],
                    {metric for metric, _ in task.selection.values()},
                    len(splits.train),
                    time.perf_counter() - start,
                )
                result["runs"][f"{budget}/{run_name(p, seed)}"] = {
                    "loss_first": round(losses[0], 5),
                    "loss_final": round(info["loss_final"], 5),
                    "val": _round(val),
                    **({"selected_step": selection["selected_step"]} if selection else {}),
                }
                # timings go to the log only: metrics stay byte-identical across reruns
                log.info(
                    "%s/%s pretrain seed %d %s seed %d: %d steps in %.1f s",
                    task_name,
                    init,
                    p,
                    budget,
                    seed,
                    cfg.steps,
                    time.perf_counter() - start,
                )
                if live is not None:
                    write_curves(live, f"{budget}/{run_name(p, seed)}", losses, selection.get("history", []))
                bar.update()
    bar.close()
    if live is not None:
        live.end()
    if cfg.encoder != "frozen":
        result["encoder_lr"] = {b: {"chosen": lr, "validation": scores} for b, (lr, scores) in encoder_lrs.items()}
    return result


def _round(d: dict, digits: int = 5) -> dict:
    return {
        k: (round(float(v), digits) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None)
        for k, v in d.items()
    }
