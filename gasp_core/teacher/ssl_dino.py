"""The ``dino`` objective: the projection head and its prototype scores, the EMA teacher update, the teacher's
centring (EMA centres or Sinkhorn-Knopp) and sharpening, DINO's cross-view CLS loss with iBOT's masked patch loss,
and DINOv2's KoLeo regulariser. torch is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gasp_core.teacher.ssl_backbone import _init_linear

if TYPE_CHECKING:
    import torch

    from gasp_core.teacher.ssl_config import TeacherTrainConfig


def _dino_head(cfg: TeacherTrainConfig, embed_dim: int):
    import torch

    nn = torch.nn
    head = nn.ModuleDict(
        {
            "mlp": nn.Sequential(
                nn.Linear(embed_dim, cfg.head_hidden),
                nn.GELU(),
                nn.Linear(cfg.head_hidden, cfg.head_hidden),
                nn.GELU(),
                nn.Linear(cfg.head_hidden, cfg.head_bottleneck),
            )
        }
    )
    head.apply(_init_linear)
    head.prototypes = nn.Parameter(torch.empty(cfg.prototypes, cfg.head_bottleneck))
    nn.init.trunc_normal_(head.prototypes, std=0.02)
    return head


def head_scores(head, x: torch.Tensor) -> torch.Tensor:
    """Prototype scores: L2-normalised bottleneck against unit-norm prototypes (weight norm with g = 1)."""
    import torch
    import torch.nn.functional as F

    z = head["mlp"](x)
    with torch.autocast(device_type=z.device.type, enabled=False):
        return F.linear(F.normalize(z.float(), dim=-1), F.normalize(head.prototypes.float(), dim=-1))


@dataclass
class _Centers:
    cls: torch.Tensor
    patch: torch.Tensor


def ema_update(teacher, student, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    import torch

    with torch.no_grad():
        t = [p for p in teacher.parameters()]
        s = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, s, alpha=1.0 - momentum)


def sinkhorn_knopp(scores: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """Teacher targets (M, K) from scores (M, K): softmax at ``temp`` balanced so every prototype gets an equal
    share of the batch (DINOv2's centring)."""
    import torch

    q = torch.exp((scores.float() - scores.max()) / temp).T  # (K, M)
    q = q / q.sum()
    k, m = q.shape
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / m
    return (q * m).T


def teacher_targets(scores: torch.Tensor, center: torch.Tensor, cfg: TeacherTrainConfig) -> torch.Tensor:
    """Centred and sharpened teacher distributions (M, K) of scores (M, K); updates the EMA ``center`` in place."""
    import torch

    if cfg.centering == "sinkhorn":
        return sinkhorn_knopp(scores, cfg.teacher_temp)
    probs = torch.softmax((scores - center) / cfg.teacher_temp, dim=-1)
    center.mul_(cfg.center_momentum).add_(scores.mean(0, keepdim=True), alpha=1 - cfg.center_momentum)
    return probs


def dino_losses(
    t_cls: torch.Tensor,
    s_cls: list[torch.Tensor],
    t_patch: torch.Tensor,
    s_patch: torch.Tensor,
    patch_mask: torch.Tensor,
    centers: _Centers,
    cfg: TeacherTrainConfig,
) -> dict[str, torch.Tensor]:
    """DINO's cross-view CLS loss and iBOT's masked patch loss (and the teacher's CLS targets, 'targets').

    ``t_cls`` (2, B, K) teacher scores of the global crops, ``s_cls`` student scores per crop (globals first),
    ``t_patch`` (M, K) teacher scores of the M patches that ``patch_mask`` (2B, N) hides from the student and
    ``s_patch`` (M, K) the student's scores there.
    """
    import torch

    two, b, k = t_cls.shape
    with torch.no_grad():
        tp = teacher_targets(t_cls.reshape(two * b, k), centers.cls, cfg).view(two, b, k)
    terms = [
        -(tp[i] * torch.log_softmax(s / cfg.student_temp, dim=-1)).sum(-1).mean()
        for i in range(two)
        for j, s in enumerate(s_cls)
        if j != i
    ]
    out = {"dino": torch.stack(terms).mean()}
    ibot = s_patch.new_zeros(())
    if s_patch.shape[0]:
        with torch.no_grad():
            tpp = teacher_targets(t_patch, centers.patch, cfg)
        per_token = -(tpp * torch.log_softmax(s_patch / cfg.student_temp, dim=-1)).sum(-1)
        counts = patch_mask.sum(dim=1)
        weight = (1.0 / counts.clamp_min(1).float()).repeat_interleave(counts)  # each masked image counts once
        ibot = (per_token * weight).sum() / (counts > 0).sum()
    out["ibot"] = ibot
    out["targets"] = tp.reshape(two * b, k)
    return out


def koleo_loss(x: torch.Tensor) -> torch.Tensor:
    """DINOv2's KoLeo regulariser: minus the mean log distance of each L2-normalised row of (B, C) to its nearest
    neighbour in the batch (large when features bunch up)."""
    import torch
    import torch.nn.functional as F

    x = F.normalize(x.float(), dim=-1)
    dist = torch.cdist(x, x) + torch.eye(len(x), device=x.device) * 1e3
    return -torch.log(dist.min(dim=1).values + 1e-8).mean()


def _entropy(p: torch.Tensor) -> float:
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
