"""Map segmentation as a :class:`~gasp_core.tasks.base.Task`: a light convolutional head on the BEV features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gasp_core.data.schema import MapLayer
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Task, nanmean, to_tensor
from gasp_core.tasks.heads import MapHead
from gasp_core.tasks.map.figure import map_figure
from gasp_core.tasks.map.labels import MAP_CLASSES, MapLabels

MAIN_LAYERS = (MapLayer.PED_CROSSING, MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY)


class MapTask(Task):
    """Map segmentation: main metric mIoU over the thin layers (crossings, lane dividers, road boundaries), the
    usual protocol; drivable area reported apart."""

    name = "map"
    title = "Map segmentation"
    main_metric = ("mIoU", "higher")
    metric_titles = {"mIoU": "mIoU: crossings, dividers, boundaries"}
    secondary = ("IoU/drivable_area", "IoU/ped_crossing", "IoU/lane_divider", "IoU/road_boundary")
    label_builders = (MapLabels,)
    figure = staticmethod(map_figure)
    figure_rank = 1
    main_layers = MAIN_LAYERS

    def head(self, feat_dim):
        return MapHead(feat_dim, len(MAP_CLASSES), tuple(self.labels.manifest["map_shape"][1:]), self.cfg.head)

    def loss(self, head, bev, items, rng):
        y = to_tensor(np.stack([self.sample_array(it, "map") for it in items]), bev.device)
        logits = head(bev).float()
        # BCE plus a soft-Dice term per layer: thin layers (dividers, boundaries) cover a few % of the raster,
        # and BCE alone settles below the 0.5 threshold that IoU is measured at
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * y).sum((0, 2, 3)) + 1) / ((p + y).sum((0, 2, 3)) + 1)
        return F.binary_cross_entropy_with_logits(logits, y) + dice.mean()

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        P = np.concatenate([torch.sigmoid(head(bev_of([it]))).float().cpu().numpy() for it in items])
        Y = np.stack([self.sample_array(it, "map") for it in items]).astype(bool)
        out = {f"IoU/{name}": M.iou(P[:, k] >= 0.5, Y[:, k]) for k, name in enumerate(MAP_CLASSES)}
        out["mIoU"] = nanmean([out[f"IoU/{n}"] for n in self.main_layers])
        out["mIoU_all"] = nanmean([out[f"IoU/{n}"] for n in MAP_CLASSES])
        main = [MAP_CLASSES.index(n) for n in self.main_layers]
        counts = np.stack([[M.iou_counts(P[s, k] >= 0.5, Y[s, k]) for k in main] for s in range(len(P))])  # (S, L, 2)
        return Evaluation(out, {"prob": P[0], "truth": Y[0], "classes": np.array(MAP_CLASSES)}, {"iou_counts": counts})

    @staticmethod
    def main_from_stats(stats, weight):
        c = stats["iou_counts"]
        with np.errstate(all="ignore"):
            return np.nanmean(M.ratio(c[..., 0], c[..., 1]), axis=-1)
