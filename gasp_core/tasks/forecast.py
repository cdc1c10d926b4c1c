"""BEV semantic forecasting: object cover of each BEV cell at future times (UnO's protocol)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from gasp_core.data.schema import UnifiedCategory
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Item, Task, _batched_queries, _nanmean, _t
from gasp_core.tasks.build import forecast_grid
from gasp_core.tasks.heads import ImplicitHead
from gasp_core.tasks.labels import FORECAST_CLASSES

log = logging.getLogger(__name__)


class ForecastTask(Task):
    """BEV semantic forecasting: P(class covers (x, y) at t) for vehicle / pedestrian / cyclist. Main metric:
    vehicle AP (UnO's protocol, with vehicle soft-IoU beside it); every class is reported."""

    name = "forecast"
    histogram_stats = ("vehicle_hist",)

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.grid = forecast_grid(self.scene, self.label_cfg)
        self.times = np.asarray(self.label_cfg.forecast_times_s, np.float64)
        self.centres = self.grid.centres()

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, len(FORECAST_CLASSES), (0, 1, 3), self.scene, self.cfg.head)

    def _queries(self, cells: np.ndarray) -> np.ndarray:
        """Flat (time, row, col) indices -> (x, y, t)."""
        t_idx, cell = np.divmod(cells, len(self.centres))
        return np.column_stack([self.centres[cell], self.times[t_idx]])

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        n = self.cfg.queries
        for it in items:
            y = self._arr(it, "forecast")  # (T, C, H, W)
            flat = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])  # (T*H*W, C)
            pos = np.flatnonzero(flat.any(1))
            cells = rng.integers(len(flat), size=n)
            if len(pos):  # half the queries on object cells: objects cover < 1 % of the map
                cells[: n // 2] = rng.choice(pos, n // 2)
            qs.append(self._queries(cells))
            ys.append(flat[cells])
        logits = head(bev, _t(np.stack(qs), bev.device))
        return F.binary_cross_entropy_with_logits(logits.float(), _t(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        all_q = self._queries(np.arange(len(self.times) * len(self.centres)))
        probs = []
        for it in items:
            p = torch.sigmoid(torch.from_numpy(_batched_queries(head, bev_of([it]), all_q))).numpy()
            probs.append(p.reshape(len(self.times), *self.grid.shape, -1).transpose(0, 3, 1, 2))  # (T, C, H, W)
        return self.score(np.stack(probs), items)

    def score(self, P: np.ndarray, items: list[Item]) -> Evaluation:
        """Metrics of probabilities ``P`` (S, T, C, H, W) against the items' forecasts."""
        Y = np.stack([self._arr(it, "forecast") for it in items]).astype(bool)
        out: dict = {}
        aps = []
        for c, cls in enumerate(FORECAST_CLASSES):
            for k, t in enumerate(self.times):
                ap = M.average_precision(P[:, k, c], Y[:, k, c])
                out[f"AP/{cls.label}/{t:g}s"] = ap
                out[f"softIoU/{cls.label}/{t:g}s"] = M.soft_iou(P[:, k, c], Y[:, k, c])
                aps.append(ap)
            out[f"AP/{cls.label}"] = _nanmean([out[f"AP/{cls.label}/{t:g}s"] for t in self.times])
            out[f"softIoU/{cls.label}"] = _nanmean([out[f"softIoU/{cls.label}/{t:g}s"] for t in self.times])
        out["mAP"] = _nanmean(aps)
        out["softIoU"] = _nanmean([out[f"softIoU/{cls.label}"] for cls in FORECAST_CLASSES])
        vehicle = FORECAST_CLASSES.index(UnifiedCategory.VEHICLE)
        hist = np.stack(
            [
                [M.score_histogram(P[s, k, vehicle], Y[s, k, vehicle]) for k in range(len(self.times))]
                for s in range(len(P))
            ]
        )  # (S, T, 2, bins)
        return Evaluation(
            out,
            {
                "prob": P[0],
                "truth": Y[0],
                "times": self.times,
                "classes": np.array([c.label for c in FORECAST_CLASSES]),
            },
            {"vehicle_hist": hist},
        )

    @staticmethod
    def main_from_stats(stats, weight):
        with np.errstate(all="ignore"):
            return np.nanmean(M.ap_from_histogram(stats["vehicle_hist"]), axis=-1)
