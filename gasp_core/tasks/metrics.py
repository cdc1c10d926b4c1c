"""Downstream metrics: average precision, IoU and soft IoU, trajectory L2 and collision rate.

Besides the metrics themselves, each has a per-sample *statistic* form (score histograms for AP, intersection and
union counts for IoU) whose sums over any resampling of the test samples give the metric of that resample: what
the paired bootstrap of :mod:`gasp_core.tasks.stats` needs.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Polygon

AP_BINS = 2048
"""Score bins of the AP histograms: uniform in logit over [-AP_LOGIT_RANGE, AP_LOGIT_RANGE]."""
AP_LOGIT_RANGE = 10.0


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` (tied scores form one threshold); nan without positives."""
    scores, labels = np.ravel(scores).astype(np.float64), np.ravel(labels).astype(bool)
    if not labels.any():
        return float("nan")
    from sklearn.metrics import average_precision_score  # imported here: 2 s that stages without AP never pay

    return float(average_precision_score(labels, scores))


def score_histogram(prob: np.ndarray, labels: np.ndarray, bins: int = AP_BINS) -> np.ndarray:
    """(2, bins) counts of positives (row 0) and negatives (row 1) per score bin, bins uniform in logit."""
    p = np.clip(np.ravel(prob).astype(np.float64), 1e-12, 1 - 1e-12)
    logit = np.clip(np.log(p) - np.log1p(-p), -AP_LOGIT_RANGE, AP_LOGIT_RANGE)
    b = np.minimum(((logit + AP_LOGIT_RANGE) / (2 * AP_LOGIT_RANGE) * bins).astype(np.int64), bins - 1)
    y = np.ravel(labels).astype(bool)
    return np.stack([np.bincount(b[y], minlength=bins), np.bincount(b[~y], minlength=bins)]).astype(np.int32)


def ap_from_histogram(hist: np.ndarray) -> np.ndarray:
    """AP of histograms (..., 2, bins) as :func:`score_histogram` writes them (each bin one threshold, as
    scikit-learn treats tied scores); nan where there are no positives."""
    pos = np.flip(hist[..., 0, :], -1).astype(np.float64)
    neg = np.flip(hist[..., 1, :], -1).astype(np.float64)
    tp, called = np.cumsum(pos, -1), np.cumsum(pos + neg, -1)
    precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    total = pos.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (pos * precision).sum(-1) / total, np.nan)


def pr_from_histogram(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each threshold of one histogram (2, bins) as :func:`score_histogram` writes it, from
    the highest score down; only thresholds that call something. Empty arrays without positives."""
    pos = np.flip(np.asarray(hist)[0], -1).astype(np.float64)
    neg = np.flip(np.asarray(hist)[1], -1).astype(np.float64)
    if pos.sum() == 0:
        return np.zeros(0), np.zeros(0)
    tp, called = np.cumsum(pos), np.cumsum(pos + neg)
    keep = (pos + neg) > 0
    return tp[keep] / pos.sum(), tp[keep] / called[keep]


def compact_histograms(hist: np.ndarray) -> np.ndarray:
    """Histograms (S, ..., 2, bins) with only the bins that hold a positive somewhere (in any sample or row), the
    negatives of every dropped bin added to the kept bin just below it (dropped below the lowest). Exact for
    :func:`ap_from_histogram` of any weighted sum over the samples: each kept bin sees the same positives and the
    same count of scores at or above it. Makes the bootstrap's AP replicates cost bins-with-positives, not 2048."""
    hist = np.asarray(hist)
    bins = hist.shape[-1]
    kept = np.flatnonzero(hist[..., 0, :].reshape(-1, bins).any(0))
    if len(kept) == bins:
        return hist
    if not len(kept):  # no positives: AP is nan whatever the negatives; keep one (empty) bin
        return np.zeros((*hist.shape[:-1], 1), hist.dtype)
    # bin j goes to the kept bin at or below it: segment sums over [kept[k], kept[k + 1])
    return np.add.reduceat(hist[..., kept[0] :], kept - kept[0], axis=-1)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (nan when both are empty)."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    union = (pred | target).sum()
    return float((pred & target).sum() / union) if union else float("nan")


def iou_counts(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2,) intersection and union counts of two boolean masks: the summable form of :func:`iou`."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    return np.array([(pred & target).sum(), (pred | target).sum()], np.int64)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, nan where den is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def soft_iou(prob: np.ndarray, target: np.ndarray) -> float:
    """sum(p * y) / sum(p + y - p * y): IoU without a threshold, as in UnO's BEV forecasting protocol."""
    p, y = np.asarray(prob, np.float64), np.asarray(target, np.float64)
    denom = (p + y - p * y).sum()
    return float((p * y).sum() / denom) if denom else float("nan")


def l2_at(
    pred_xy: np.ndarray, true_xy: np.ndarray, times_s: np.ndarray, at_s: tuple[float, ...] = (1.0, 2.0, 3.0)
) -> dict[str, float]:
    """L2 error of predicted waypoints (K, 2) at the waypoint times ``at_s`` (each must be one of ``times_s``)."""
    err = np.linalg.norm(np.asarray(pred_xy) - np.asarray(true_xy), axis=-1)
    return {f"l2_{t:g}s": float(err[_time_index(times_s, t)]) for t in at_s}


def _time_index(times_s: np.ndarray, t: float) -> int:
    times_s = np.asarray(times_s, np.float64)
    k = int(np.argmin(np.abs(times_s - t)))
    if abs(times_s[k] - t) > 1e-6:
        raise ValueError(f"no waypoint at {t:g} s (waypoint times: {times_s.tolist()})")
    return k


def collides(
    traj_xy: np.ndarray,
    traj_yaw: np.ndarray,
    ego_lw: tuple[float, float],
    rear_overhang_m: float,
    boxes_per_step: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """(K,) whether the ego footprint at each waypoint overlaps any object box at the same step.

    ``traj_xy`` (K, 2) are rear-axle positions with headings ``traj_yaw``; the footprint reaches
    ``rear_overhang_m`` behind the rear axle and ``length - rear_overhang_m`` ahead of it.
    ``boxes_per_step[k]`` = (centres (N, 2), yaws (N,), length-width (N, 2)) at waypoint k. Polygon
    intersection with shapely (touching counts as overlap).
    """
    length, width = ego_lw
    ego_radius = 0.5 * float(np.hypot(length, width))
    out = np.zeros(len(traj_xy), bool)
    for k, ((x, y), yaw, (centres, yaws, lw)) in enumerate(zip(traj_xy, traj_yaw, boxes_per_step)):
        if not len(centres):
            continue
        centre = np.array([x, y]) + (length / 2 - rear_overhang_m) * np.array([np.cos(yaw), np.sin(yaw)])
        centres, yaws, lw = np.asarray(centres, np.float64), np.asarray(yaws, np.float64), np.asarray(lw, np.float64)
        # only boxes whose circumcircle reaches the ego's can overlap it (margin: touching counts as overlap)
        near = np.hypot(*(centres - centre).T) <= ego_radius + 0.5 * np.hypot(lw[:, 0], lw[:, 1]) + 1e-6
        if not near.any():
            continue
        ego = _rectangle(centre, yaw, length, width)
        others = shapely.polygons(_corners(centres[near], yaws[near], lw[near, 0], lw[near, 1]))
        out[k] = bool(shapely.intersects(ego, others).any())
    return out


_SIGNS = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64)


def _corners(c: np.ndarray, a, length, width) -> np.ndarray:
    """Corners (..., 4, 2) of rectangles centred at ``c`` (..., 2) with heading ``a`` and size ``length`` x
    ``width`` (scalars or arrays over the leading dimensions), counter-clockwise from rear right."""
    a, length, width = np.asarray(a, np.float64), np.asarray(length, np.float64), np.asarray(width, np.float64)
    u = np.stack([np.cos(a), np.sin(a)], -1)[..., None, :]
    v = np.stack([-np.sin(a), np.cos(a)], -1)[..., None, :]
    sx, sy = _SIGNS[:, :1], _SIGNS[:, 1:]
    return (
        np.asarray(c, np.float64)[..., None, :]
        + sx * length[..., None, None] / 2 * u
        + sy * width[..., None, None] / 2 * v
    )


def _rectangle(c: np.ndarray, a: float, length: float, width: float) -> Polygon:
    return Polygon(_corners(c, a, length, width))
