"""BEV forecasting metrics: AP and soft-IoU per class and horizon, and the vehicle AP histograms the bootstrap reads."""

from __future__ import annotations

import numpy as np

from gasp_core.data.schema import UnifiedCategory
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, nanmean
from gasp_core.tasks.forecast.labels import FORECAST_CLASSES


def score(P: np.ndarray, Y: np.ndarray, times: np.ndarray) -> Evaluation:
    """Metrics of probabilities ``P`` (S, T, C, H, W) against the cover ``Y`` (same shape, bool) at ``times``."""
    out: dict = {}
    aps = []
    for c, cls in enumerate(FORECAST_CLASSES):
        for k, t in enumerate(times):
            ap = M.average_precision(P[:, k, c], Y[:, k, c])
            out[f"AP/{cls.label}/{t:g}s"] = ap
            out[f"softIoU/{cls.label}/{t:g}s"] = M.soft_iou(P[:, k, c], Y[:, k, c])
            aps.append(ap)
        out[f"AP/{cls.label}"] = nanmean([out[f"AP/{cls.label}/{t:g}s"] for t in times])
        out[f"softIoU/{cls.label}"] = nanmean([out[f"softIoU/{cls.label}/{t:g}s"] for t in times])
    out["mAP"] = nanmean(aps)
    out["softIoU"] = nanmean([out[f"softIoU/{cls.label}"] for cls in FORECAST_CLASSES])
    vehicle = FORECAST_CLASSES.index(UnifiedCategory.VEHICLE)
    hist = np.stack(
        [[M.score_histogram(P[s, k, vehicle], Y[s, k, vehicle]) for k in range(len(times))] for s in range(len(P))]
    )  # (S, T, 2, bins)
    return Evaluation(
        out,
        {"prob": P[0], "truth": Y[0], "times": times, "classes": np.array([c.label for c in FORECAST_CLASSES])},
        {"vehicle_hist": hist},
    )


def main_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
    """Vehicle AP, averaged over the horizons, from summed score histograms."""
    with np.errstate(all="ignore"):
        return np.nanmean(M.ap_from_histogram(stats["vehicle_hist"]), axis=-1)
