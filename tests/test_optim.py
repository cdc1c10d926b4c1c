"""The shared training step and LR schedule (gasp_core.optim): torch's chained schedulers give the closed-form
warm-up + cosine per parameter group, and the step trains, clips and reports the rate each step used."""

from __future__ import annotations

import math

import pytest
import torch

from gasp_core.optim import run_steps, warmup_cosine


def _closed_form(step: int, warmup: int, steps: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


@pytest.mark.parametrize("warmup,steps", [(10, 60), (20, 200), (0, 5), (1, 3), (3, 4)])
def test_schedule_is_linear_warmup_then_cosine_to_zero_per_group(warmup, steps):
    w = torch.nn.Parameter(torch.zeros(1))
    v = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [w], "lr": 3e-3}, {"params": [v], "lr": 3e-4}])
    sched = warmup_cosine(opt, warmup, steps)
    for s in range(steps):
        expected = _closed_form(s, warmup, steps)
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-3 * expected, rel=1e-9, abs=1e-15), s
        assert opt.param_groups[1]["lr"] == pytest.approx(3e-4 * expected, rel=1e-9, abs=1e-15), s
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)  # reaches zero at ``steps``


def test_schedule_rejects_nonsense():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(opt, -1, 10)


def test_run_steps_trains_reports_the_rate_used_and_clips():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.5, -2.0, 0.5]) + 0.3
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = warmup_cosine(opt, 5, 40)
    seen: list[tuple[int, float, float]] = []

    def loss_of(batch):
        return {"total": ((model(batch).squeeze(-1) - y) ** 2).mean()}

    taken = run_steps(
        (x for _ in range(40)),
        loss_of,
        opt,
        sched,
        model.parameters(),
        grad_clip=0.0,
        device=torch.device("cpu"),
        start=7,
        on_step=lambda s, losses, lr: seen.append((s, float(losses["total"]), lr)),
    )
    assert taken == 40 and [s for s, _, _ in seen] == list(range(7, 47))
    assert [lr for _, _, lr in seen] == pytest.approx([0.1 * _closed_form(s, 5, 40) for s in range(40)])
    assert seen[-1][1] < 0.05 * seen[0][1]  # the loss falls

    # clipping: one step with a huge loss moves the weights by at most lr * clip (SGD)
    big = torch.nn.Linear(3, 1)
    before = torch.cat([p.detach().flatten() for p in big.parameters()]).clone()
    opt2 = torch.optim.SGD(big.parameters(), lr=1.0)
    run_steps(
        [x],
        lambda b: {"total": 1e6 * big(b).pow(2).mean()},
        opt2,
        warmup_cosine(opt2, 0, 1),
        big.parameters(),
        grad_clip=0.5,
        device=torch.device("cpu"),
    )
    moved = torch.cat([p.detach().flatten() for p in big.parameters()]) - before
    assert 0.49 < float(moved.norm()) <= 0.5 + 1e-6
