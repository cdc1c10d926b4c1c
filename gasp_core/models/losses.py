"""Pre-training losses: BCE for occupancy and ego path, a feature loss for DINO, weighted by lambda."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gasp_core.models.config import LossConfig


def pretrain_losses(out: dict[str, Tensor], batch: dict[str, Tensor], cfg: LossConfig) -> dict[str, Tensor]:
    """Per-head losses and their weighted sum ``total``; a head missing from ``out`` contributes nothing."""
    losses: dict[str, Tensor] = {}
    total = out["bev"].new_zeros(())
    if "occupancy_logits" in out:
        w = torch.tensor(cfg.occupancy_pos_weight, device=out["bev"].device)
        losses["occupancy"] = F.binary_cross_entropy_with_logits(
            out["occupancy_logits"], batch["occupancy_label"], pos_weight=w
        )
        total = total + cfg.occupancy_weight * losses["occupancy"]
    if "ego_logits" in out:
        w = torch.tensor(cfg.ego_pos_weight, device=out["bev"].device)
        losses["ego"] = F.binary_cross_entropy_with_logits(out["ego_logits"], batch["ego_label"], pos_weight=w)
        total = total + cfg.ego_weight * losses["ego"]
    if "dino" in out:
        pred, target = out["dino"].float(), batch["dino_target"]
        if cfg.dino_loss == "cosine":
            losses["dino"] = (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
        else:
            losses["dino"] = F.mse_loss(pred, target)
        total = total + cfg.dino_weight * losses["dino"]
    losses["total"] = total
    return losses
