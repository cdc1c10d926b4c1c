"""A task written the way a new one is: its labels builder, head, loss, metrics and task class, in one file outside
``gasp_core`` and touching no other task. It regresses how far the ego drives by the end of the horizon."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gasp_core.data.samples import Sample
from gasp_core.tasks.base import Evaluation, Task, to_tensor
from gasp_core.tasks.label_builder import LabelBuilder


class ToyLabels(LabelBuilder):
    """``toy_drive_m``: (S,) the ego's distance from its t0 position at the scene's horizon."""

    keys = ("toy_drive_m",)
    stacked = frozenset(keys)

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        log = self.ctx.log
        t1_ns = sample.t0_ns + int(round(self.ctx.scene.horizon_s * 1e9))
        t0_T_t1 = np.linalg.inv(log.city_T_ego(sample.t0_ns)[0]) @ log.city_T_ego(t1_ns)[0]
        return {"toy_drive_m": np.float32(np.linalg.norm(t0_T_t1[:2, 3]))}


class ToyHead(nn.Module):
    """BEV features, averaged over the map -> one distance in metres."""

    def __init__(self, feat_dim: int) -> None:
        super().__init__()
        self.out = nn.Linear(feat_dim, 1)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        return self.out(bev.mean((2, 3)))[:, 0]


class ToyTask(Task):
    """Toy ego distance: metres the ego drives by the horizon, from the BEV features alone."""

    name = "toy_drive"
    title = "Toy ego distance"
    main_metric = ("MAE_m", "lower")
    metric_titles = {"MAE_m": "mean abs. error, m"}
    secondary = ("bias_m",)
    label_builders = (ToyLabels,)

    def head(self, feat_dim):
        return ToyHead(feat_dim)

    def truth(self, items) -> np.ndarray:
        return np.array([self.sample_array(it, "toy_drive_m") for it in items], np.float64)

    def loss(self, head, bev, items, rng):
        return torch.nn.functional.mse_loss(head(bev).float(), to_tensor(self.truth(items), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        pred = np.array([float(head(bev_of([it]))[0]) for it in items])
        err = pred - self.truth(items)
        metrics = {"MAE_m": float(np.abs(err).mean()), "bias_m": float(err.mean())}
        return Evaluation(metrics, {}, {"abs_err": np.abs(err)})

    @staticmethod
    def main_from_stats(stats, weight):
        return stats["abs_err"] / weight
