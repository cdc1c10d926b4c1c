"""4D semantic occupancy as a :class:`~gasp_core.tasks.base.Task`: an implicit head's class at (x, y, z, t)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Item, Task, batched_queries, nanmean, to_tensor
from gasp_core.tasks.forecast.labels import forecast_grid
from gasp_core.tasks.heads import ImplicitHead
from gasp_core.tasks.semantic_occupancy.figure import semantic_figure
from gasp_core.tasks.semantic_occupancy.labels import SEMANTIC_CLASSES, SemanticOccupancyLabels


class SemanticOccupancyTask(Task):
    """4D semantic occupancy: the class (background or an object category) at (x, y, z, t)."""

    name = "semantic_occupancy"
    title = "4D semantic occupancy"
    main_metric = ("mAP", "higher")
    metric_titles = {"mAP": "mAP"}
    secondary = ("mIoU", "AP/vehicle", "AP/pedestrian", "AP/cyclist", "AP/other")
    label_builders = (SemanticOccupancyLabels,)
    figure = staticmethod(semantic_figure)
    figure_rank = 4
    pr_curve = "classes pooled"
    histogram_stats = ("hist",)

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, len(SEMANTIC_CLASSES), (0, 1, 2, 3), self.scene, self.cfg.head)

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        for it in items:
            q, y = self.sample_rows(it, "sem_xyzt", "sem_sample"), self.sample_rows(it, "sem_class", "sem_sample")
            pick = rng.integers(len(q), size=self.cfg.queries)
            qs.append(q[pick])
            ys.append(y[pick])
        logits = head(bev, to_tensor(np.stack(qs), bev.device))
        target = torch.as_tensor(np.stack(ys).astype(np.int64), device=bev.device)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten())

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        probs, ys, hists = [], [], []
        for it in items:
            logits = batched_queries(head, bev_of([it]), self.sample_rows(it, "sem_xyzt", "sem_sample"))
            p = torch.softmax(torch.from_numpy(logits), -1).numpy()
            y = self.sample_rows(it, "sem_class", "sem_sample")
            probs.append(p)
            ys.append(y)
            hists.append(np.stack([M.score_histogram(p[:, c], y == c) for c in range(1, len(SEMANTIC_CLASSES))]))
        P, y = np.concatenate(probs), np.concatenate(ys)
        pred = P.argmax(1)
        out = {}
        for c, name in enumerate(SEMANTIC_CLASSES):
            if c:
                out[f"AP/{name}"] = M.average_precision(P[:, c], y == c)
            out[f"IoU/{name}"] = M.iou(pred == c, y == c)
        out["mAP"] = nanmean([out[f"AP/{n}"] for n in SEMANTIC_CLASSES[1:]])
        out["mIoU"] = nanmean([out[f"IoU/{n}"] for n in SEMANTIC_CLASSES])
        return Evaluation(out, self.bev_slice(head, bev_of, items[0]), {"hist": np.stack(hists)})

    @staticmethod
    def main_from_stats(stats, weight):
        with np.errstate(all="ignore"):
            return np.nanmean(M.ap_from_histogram(stats["hist"]), axis=-1)

    def bev_slice(self, head, bev_of, item: Item, z_m: float = 0.75) -> dict:
        """The predicted class over the forecasting grid at t0 and height ``z_m``, beside the boxes' BEV cover."""
        grid = forecast_grid(self.scene, self.label_cfg)
        xy = grid.centres()
        q = np.column_stack([xy, np.full(len(xy), z_m), np.zeros(len(xy))])
        pred = batched_queries(head, bev_of([item]), q).argmax(1).reshape(grid.shape)
        cover = self.sample_array(item, "forecast")[0]  # (3, H, W) at the first forecast time (t0 when it is 0)
        truth = np.zeros(grid.shape, np.int64)
        for c in range(len(cover)):
            truth[cover[c].astype(bool)] = c + 1
        return {"pred": pred, "truth": truth, "classes": np.array(SEMANTIC_CLASSES)}
