"""The one optimisation loop and learning-rate schedule that pre-training and fine-tuning share.

:func:`warmup_cosine` is torch's own schedulers chained (``LinearLR`` warm-up, then ``CosineAnnealingLR`` to zero):
the factor of step ``s`` is ``(s + 1) / warmup`` during the warm-up and ``(1 + cos(pi * (s - warmup) / (steps -
warmup))) / 2`` after it, per parameter group (each group's own base rate). :func:`run_steps` is the step itself:
forward and loss under bf16 autocast on CUDA, backward, gradient clipping, the optimiser and scheduler steps, and a
callback that sees each step's losses and the rate it used (logging, checkpoints, validation live there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(opt: torch.optim.Optimizer, warmup_steps: int, steps: int) -> LRScheduler:
    """Linear warm-up over ``warmup_steps`` (the first step at ``1 / warmup_steps`` of the base rate), then cosine
    decay reaching zero at ``steps``; ``warmup_steps = 0`` starts the cosine at once."""
    if warmup_steps < 0 or steps < 1:
        raise ValueError(f"warmup_steps = {warmup_steps}, steps = {steps}: need warmup_steps >= 0 and steps >= 1")
    cosine = CosineAnnealingLR(opt, T_max=max(1, steps - warmup_steps), eta_min=0.0)
    if warmup_steps == 0:
        return cosine
    # LinearLR reaches end_factor after total_iters steps: factor (s + 1) / warmup at step s < warmup
    warm = LinearLR(opt, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=max(1, warmup_steps - 1))
    return SequentialLR(opt, [warm, cosine], milestones=[warmup_steps])


def run_steps(
    batches: Iterable[Any],
    loss_of: Callable[[Any], dict[str, torch.Tensor]],
    opt: torch.optim.Optimizer,
    sched: LRScheduler,
    params: Iterable[torch.nn.Parameter],
    *,
    grad_clip: float,
    device: torch.device,
    start: int = 0,
    on_step: Callable[[int, dict[str, torch.Tensor], float], None] | None = None,
) -> int:
    """Train on ``batches``: for each, ``loss_of(batch)`` under autocast (bf16 on CUDA) returns the losses with the
    one to minimise under ``"total"``; backward, clip the gradient norm of ``params`` to ``grad_clip`` (0: no
    clipping), step the optimiser, then the scheduler. ``on_step(step, losses, lr)`` runs after each step with the
    step's index (from ``start``), its losses (detached) and the first group's rate that the step used. Returns the
    number of steps taken. Batches are drawn one at a time, after the previous step (no prefetch of its own)."""
    params = list(params)
    use_amp = device.type == "cuda"
    taken = 0
    it: Iterator[Any] = iter(batches)
    for step, batch in enumerate(it, start=start):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        lr = float(opt.param_groups[0]["lr"])  # the rate this step used
        sched.step()
        taken += 1
        if on_step is not None:
            on_step(step, {k: v.detach() for k, v in losses.items()}, lr)
    return taken
