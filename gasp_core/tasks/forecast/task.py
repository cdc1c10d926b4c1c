"""BEV semantic forecasting as a :class:`~gasp_core.tasks.base.Task`: an implicit head queried at (x, y, t)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gasp_core.tasks.base import Evaluation, Item, Task, batched_queries, to_tensor
from gasp_core.tasks.forecast import metrics
from gasp_core.tasks.forecast.figure import forecast_figure
from gasp_core.tasks.forecast.labels import FORECAST_CLASSES, ForecastLabels, forecast_grid
from gasp_core.tasks.heads import ImplicitHead


class ForecastTask(Task):
    """BEV semantic forecasting: P(class covers (x, y) at t) for vehicle / pedestrian / cyclist. Main metric:
    vehicle AP (UnO's protocol, with vehicle soft-IoU beside it); every class is reported."""

    name = "forecast"
    title = "BEV semantic forecasting"
    main_metric = ("AP/vehicle", "higher")
    metric_titles = {"AP/vehicle": "vehicle AP"}
    secondary = ("softIoU/vehicle", "AP/pedestrian", "AP/cyclist", "mAP", "softIoU")
    label_builders = (ForecastLabels,)
    figure = staticmethod(forecast_figure)
    figure_rank = 0
    pr_curve = "vehicle, pooled over horizons"
    histogram_stats = ("vehicle_hist",)
    main_from_stats = staticmethod(metrics.main_from_stats)

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.grid = forecast_grid(self.scene, self.label_cfg)
        self.times = np.asarray(self.label_cfg.forecast_times_s, np.float64)
        self.centres = self.grid.centres()

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, len(FORECAST_CLASSES), (0, 1, 3), self.scene, self.cfg.head)

    def queries(self, cells: np.ndarray) -> np.ndarray:
        """Flat (time, row, col) indices -> (x, y, t)."""
        t_idx, cell = np.divmod(cells, len(self.centres))
        return np.column_stack([self.centres[cell], self.times[t_idx]])

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        n = self.cfg.queries
        for it in items:
            y = self.sample_array(it, "forecast")  # (T, C, H, W)
            flat = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])  # (T*H*W, C)
            pos = np.flatnonzero(flat.any(1))
            cells = rng.integers(len(flat), size=n)
            if len(pos):  # half the queries on object cells: objects cover < 1 % of the map
                cells[: n // 2] = rng.choice(pos, n // 2)
            qs.append(self.queries(cells))
            ys.append(flat[cells])
        logits = head(bev, to_tensor(np.stack(qs), bev.device))
        return F.binary_cross_entropy_with_logits(logits.float(), to_tensor(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        all_q = self.queries(np.arange(len(self.times) * len(self.centres)))
        probs = []
        for it in items:
            p = torch.sigmoid(torch.from_numpy(batched_queries(head, bev_of([it]), all_q))).numpy()
            probs.append(p.reshape(len(self.times), *self.grid.shape, -1).transpose(0, 3, 1, 2))  # (T, C, H, W)
        return self.score(np.stack(probs), items)

    def score(self, P: np.ndarray, items: list[Item]) -> Evaluation:
        """Metrics of probabilities ``P`` (S, T, C, H, W) against the items' forecasts."""
        Y = np.stack([self.sample_array(it, "forecast") for it in items]).astype(bool)
        return metrics.score(P, Y, self.times)
