"""In-domain self-supervised teacher: a small timm ViT trained on the world's own camera images, without labels.

Two objectives:

* ``mae``: masked autoencoder. The encoder sees only the visible patches; a light decoder (timm blocks) predicts
  the per-patch normalised pixels of the masked ones.
* ``dino``: DINO self-distillation from an EMA teacher across 2 global and n local crops (centring and
  sharpening of the teacher's prototype scores), plus iBOT's masked patch-token term, so the patch tokens (the
  dense features the targets use), not only CLS, are trained.

The output folder holds the ViT backbone alone (``model.safetensors``, loadable strictly into
``timm.create_model(model, pretrained=False, dynamic_img_size=True, num_classes=0, **model_args)``) and
``teacher.json`` (how to build and feed it). torch and timm are imported only when training starts, so a disabled
stage costs nothing.

This module is the training loop and the output; the config is in ``ssl_config``, the inputs (crops, masks)
in ``ssl_augment``, the ViT in ``ssl_backbone`` and the objectives in ``ssl_mae`` and ``ssl_dino``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gasp_core.card import render, write_card
from gasp_core.io import atomic_dir, write_json_atomic
from gasp_core.teacher.ssl_augment import _color_jitter, _crops, block_mask, preload_images, random_masks
from gasp_core.teacher.ssl_backbone import _sincos_init, build_backbone, embed_tokens
from gasp_core.teacher.ssl_config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    META_FILE,
    WEIGHTS_FILE,
    TeacherTrainConfig,
    _validate,
)
from gasp_core.teacher.ssl_dino import _Centers, _dino_head, _entropy, dino_losses, ema_update, head_scores, koleo_loss
from gasp_core.teacher.ssl_mae import _mae_decoder, mae_loss

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _param_groups(modules, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            flat = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token", "mask_token"))
            (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(cfg: TeacherTrainConfig, step: int, progress: float) -> tuple[float, float]:
    """Learning rate and EMA momentum at ``step`` and training progress in [0, 1]."""
    if step < cfg.warmup_steps:
        lr = cfg.lr * (step + 1) / cfg.warmup_steps
    else:
        start = min(cfg.warmup_steps / max(cfg.steps, 1), 0.99)
        q = min(max((progress - start) / (1.0 - start), 0.0), 1.0)
        lr = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * q)))
    momentum = 1.0 - (1.0 - cfg.ema) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return lr, momentum


def _batches(rng: np.random.Generator, n: int, size: int):
    """Endless batches of image indices: shuffled epochs, batches may straddle epochs."""
    pool = np.empty(0, dtype=np.int64)
    while True:
        while len(pool) < size:
            pool = np.concatenate([pool, rng.permutation(n)])
        yield pool[:size]
        pool = pool[size:]


def train_teacher(
    images: Sequence[Path | str] | Sequence[Any] | torch.Tensor,
    cfg: TeacherTrainConfig,
    *,
    out_dir: Path,
    progress: bool = True,
) -> dict:
    """Train the teacher on ``images`` (image files, or (3, H, W) tensors: uint8 or float in [0, 1]) and write
    ``model.safetensors`` (the ViT backbone) and ``teacher.json`` into ``out_dir`` atomically; returns metrics.

    ``mae`` saves the encoder, ``dino`` the EMA teacher's backbone.
    """
    import torch
    from safetensors.torch import save_file

    from gasp_core.progress import progress as progress_bar
    from gasp_core.teacher.dinov2 import resolve_device

    _validate(cfg)
    start = time.perf_counter()
    deadline = None if cfg.max_seconds is None else start + cfg.max_seconds
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        patch = int(build_backbone(cfg.model, {"img_size": 224, **cfg.model_args}).patch_embed.patch_size[0])
        canvas, sizes, train_hw = preload_images(images, cfg.image_side_px, patch)
        canvas = canvas.to(device)
        model_args = {**cfg.model_args}
        model_args.setdefault("img_size", list(train_hw))
        torch.manual_seed(cfg.seed)
        vit = build_backbone(cfg.model, model_args).to(device)
        _sincos_init(vit)
        load_s = time.perf_counter() - start
        grid = (train_hw[0] // patch, train_hw[1] // patch)
        log.info(
            "teacher (%s): %d images at %dx%d (%dx%d patches of %d px), %s with %.2f M parameters, on %s; "
            "loaded in %.1f s",
            cfg.objective,
            len(canvas),
            train_hw[1],
            train_hw[0],
            grid[1],
            grid[0],
            patch,
            cfg.model,
            sum(p.numel() for p in vit.parameters()) / 1e6,
            device,
            load_s,
        )
        step_fn, extras, trainable = _objective(cfg, vit, canvas, sizes, train_hw, patch, rng, device)
        opt = torch.optim.AdamW(_param_groups(trainable, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95), foreach=True)
        params = [p for group in opt.param_groups for p in group["params"]]
        batches = _batches(rng, len(canvas), cfg.batch_size)
        curve, window, first, stopped_by = [], [], None, "steps"
        train_start = time.perf_counter()
        bar = progress_bar(
            total=cfg.steps,
            desc=f"teacher {cfg.objective}",
            unit="step",
            disable=not (progress and sys.stderr.isatty()),
        )
        step = 0
        for step in range(cfg.steps):
            now = time.perf_counter()
            if deadline is not None and (now >= deadline or (step and now + (now - train_start) / step > deadline)):
                stopped_by = "max_seconds"
                break
            frac = step / cfg.steps
            if deadline is not None and cfg.time_schedule:
                frac = max(frac, (now - train_start) / max(deadline - train_start, 1e-9))
            lr, momentum = _schedule(cfg, step, frac)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                losses = step_fn(next(batches))
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            opt.step()
            if "ema" in extras:
                extras["ema"](momentum)
            values = {k: float(v.detach()) for k, v in losses.items()}
            first = first or values
            window.append(values)
            bar.update(1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                mean = {k: round(sum(w[k] for w in window) / len(window), 5) for k in window[0]}
                curve.append({"step": step + 1, **mean})
                window = []
                log.info(
                    "teacher step %d/%d: %s, lr %.2e, %.2f steps/s",
                    step + 1,
                    cfg.steps,
                    ", ".join(f"{k} {v:.4f}" for k, v in mean.items()),
                    lr,
                    (step + 1) / (time.perf_counter() - train_start),
                )
                bar.set_postfix(loss=f"{mean['loss']:.4f}")
        else:
            step = cfg.steps
        bar.close()
        if window:
            curve.append({"step": step, **{k: round(sum(w[k] for w in window) / len(window), 5) for k in window[0]}})
        train_s = time.perf_counter() - train_start
        backbone = extras.get("teacher_vit", vit)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
        seconds = time.perf_counter() - start
        meta = {
            "trained": True,
            "model": cfg.model,
            "model_args": model_args,
            "objective": cfg.objective,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "max_side_px": max(train_hw),
            "input_hw": list(train_hw),
            "patch_size": patch,
            "embed_dim": int(vit.embed_dim),
            "steps_done": step,
            "images": len(canvas),
            "stopped_by": stopped_by,
            "loss_curve": curve,
            "config": asdict(cfg),
        }
        with atomic_dir(Path(out_dir)) as tmp:
            # one metadata entry: safetensors writes several in a random order, and the file's bytes name the
            # teacher downstream (its weights id), so they must not change from run to run
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"gasp_teacher": f"{cfg.model}:{cfg.objective}"})
            write_json_atomic(tmp / META_FILE, meta)
            write_card(tmp, _card(meta, first, curve), seconds=seconds)  # the wall time beside it, out of DVC's hash
        metrics = {
            "trained": True,
            "objective": cfg.objective,
            "model": cfg.model,
            "images": len(canvas),
            "input_hw": list(train_hw),
            "patch_size": patch,
            "steps_done": step,
            "stopped_by": stopped_by,
            "seconds": round(seconds, 2),
            "load_seconds": round(load_s, 2),
            "steps_per_s": round(step / max(train_s, 1e-9), 3),
            "device": str(device),
            "params_m": round(sum(p.numel() for p in vit.parameters()) / 1e6, 3),
            "loss_first": round(first["loss"], 5) if first else None,
            "loss_final": curve[-1]["loss"] if curve else None,
            **{f"{k}_final": v for k, v in (curve[-1].items() if curve else ()) if k not in ("step", "loss")},
            **{k: v() for k, v in extras.get("diagnostics", {}).items()},
        }
        log.info(
            "teacher: %d steps in %.1f s (%s), loss %s -> %s",
            step,
            seconds,
            stopped_by,
            metrics["loss_first"],
            metrics["loss_final"],
        )
        return metrics
    finally:
        torch.set_num_threads(threads)


def _objective(cfg: TeacherTrainConfig, vit, canvas, sizes, train_hw, patch, rng, device):
    """The objective's step function (batch indices -> dict of losses with 'loss'), extras and trainable modules."""
    import copy

    import torch

    grid = (train_hw[0] // patch, train_hw[1] // patch)
    n_tokens = grid[0] * grid[1]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    vit.train()

    if cfg.objective == "mae":
        dec = _mae_decoder(cfg, vit.embed_dim, grid, patch, vit.num_prefix_tokens).to(device)

        def mae_step(idx: np.ndarray) -> dict:
            x = (_crops(canvas, idx, sizes, train_hw, cfg.crop_scale, rng, device) - mean) / std
            ids_keep, mask = random_masks(rng, len(idx), n_tokens, cfg.mask_ratio)
            loss = mae_loss(
                vit,
                dec,
                x,
                torch.from_numpy(ids_keep).to(device),
                torch.from_numpy(mask).to(device),
                patch,
                cfg.norm_pix_loss,
            )
            return {"loss": loss}

        return mae_step, {}, [vit, dec]

    head = _dino_head(cfg, vit.embed_dim).to(device)
    mask_token = torch.nn.Parameter(torch.zeros(1, 1, vit.embed_dim, device=device))
    student = torch.nn.ModuleDict({"vit": vit, "head": head})
    student.mask_token = mask_token
    teacher = torch.nn.ModuleDict({"vit": copy.deepcopy(vit), "head": copy.deepcopy(head)}).requires_grad_(False)
    teacher.eval()
    centers = _Centers(torch.zeros(1, cfg.prototypes, device=device), torch.zeros(1, cfg.prototypes, device=device))
    local_hw = (cfg.local_crop_patches * patch, cfg.local_crop_patches * patch)
    npre = vit.num_prefix_tokens
    last: dict[str, float] = {}

    def view(idx: np.ndarray, out_hw, scale) -> torch.Tensor:
        x = _crops(canvas, idx, sizes, out_hw, scale, rng, device)
        return (_color_jitter(x, cfg.color_jitter, cfg.grayscale_prob, rng) - mean) / std

    def dino_step(idx: np.ndarray) -> dict:
        b = len(idx)
        globals_ = torch.cat([view(idx, train_hw, cfg.crop_scale) for _ in range(2)])
        masks = np.zeros((2 * b, n_tokens), dtype=bool)
        if cfg.ibot_weight > 0:
            for i in np.flatnonzero(rng.random(2 * b) < cfg.ibot_mask_prob):
                ratio = rng.uniform(*cfg.ibot_mask_ratio)
                masks[i] = block_mask(rng, grid, int(round(ratio * n_tokens))).reshape(-1)
        pmask = torch.from_numpy(masks).to(device)
        with torch.no_grad():
            t = teacher["vit"].forward_features(globals_)
            t_cls = head_scores(teacher["head"], t[:, 0]).view(2, b, -1)
            t_patch = head_scores(teacher["head"], t[:, npre:][pmask])
        s = vit.norm(vit.blocks(embed_tokens(vit, globals_, pmask, mask_token)))
        s_cls = list(head_scores(head, s[:, 0]).view(2, b, -1))
        s_patch = head_scores(head, s[:, npre:][pmask])
        if cfg.local_crops:
            locals_ = torch.cat([view(idx, local_hw, cfg.local_scale) for _ in range(cfg.local_crops)])
            s_cls += list(head_scores(head, vit.forward_features(locals_)[:, 0]).view(cfg.local_crops, b, -1))
        parts = dino_losses(t_cls, s_cls, t_patch, s_patch, pmask, centers, cfg)
        targets = parts.pop("targets")
        if cfg.koleo_weight > 0:
            parts["koleo"] = sum(koleo_loss(chunk[:, 0]) for chunk in s.chunk(2)) / 2
        last["teacher_entropy"] = _entropy(targets)
        last["teacher_batch_entropy"] = _entropy(targets.mean(0, keepdim=True))
        loss = parts["dino"] + cfg.ibot_weight * parts["ibot"] + cfg.koleo_weight * parts.get("koleo", 0.0)
        return {"loss": loss, **parts}

    online = torch.nn.ModuleDict({"vit": vit, "head": head})  # the student without its mask token, as the teacher
    extras = {
        "ema": lambda m: ema_update(teacher, online, m),
        "teacher_vit": teacher["vit"],
        "diagnostics": {
            k: (lambda k=k: round(last.get(k, float("nan")), 4)) for k in ("teacher_entropy", "teacher_batch_entropy")
        },
    }
    return dino_step, extras, [student]


def _card(meta: dict, first: dict | None, curve: list[dict]) -> str:
    """The model card (README.md) of a trained teacher folder (its wall time is ``timing.json`` beside it)."""
    rows = [
        (
            "model",
            f"`{meta['model']}` (timm ViT, trained from random initialisation, no labels), args {meta['model_args']}",
        ),
        ("objective", f"`{meta['objective']}` (self-supervised)"),
        (
            "data",
            f"{meta['images']} camera images of the training logs, at {meta['input_hw'][0]}x{meta['input_hw'][1]} px",
        ),
        (
            "training",
            f"{meta['steps_done']} steps (stopped by {meta['stopped_by']}), seed {meta['config'].get('seed')}",
        ),
    ]
    metrics = {"loss_first": first["loss"] if first else None, "loss_final": curve[-1]["loss"] if curve else None}
    usage = """# the image teacher of the dino_targets stage: dino_targets.teacher.weights = models/teacher
import json, timm
from safetensors.torch import load_file
meta = json.load(open("models/teacher/teacher.json"))
vit = timm.create_model(meta["model"], pretrained=False, dynamic_img_size=True, num_classes=0, **meta["model_args"])
vit.load_state_dict(load_file("models/teacher/model.safetensors"))  # inputs: meta["mean"], meta["std"], input_hw"""
    title = f"In-domain image teacher: `{meta['model']}`, `{meta['objective']}`"
    return render(title, rows, warning=None, metrics={k: v for k, v in metrics.items() if v is not None}, usage=usage)
