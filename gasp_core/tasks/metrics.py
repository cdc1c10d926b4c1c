"""Downstream metrics: average precision, IoU and soft IoU, trajectory L2 and collision rate."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as sklearn's average_precision_score)."""
    scores, labels = np.ravel(scores), np.ravel(labels)
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (nan when both are empty)."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    union = (pred | target).sum()
    return float((pred & target).sum() / union) if union else float("nan")


def soft_iou(prob: np.ndarray, target: np.ndarray) -> float:
    """sum(p * y) / sum(p + y - p * y): IoU without a threshold, as in UnO's BEV forecasting protocol."""
    p, y = np.asarray(prob, np.float64), np.asarray(target, np.float64)
    denom = (p + y - p * y).sum()
    return float((p * y).sum() / denom) if denom else float("nan")


def l2_at(pred_xy: np.ndarray, true_xy: np.ndarray, times_s: np.ndarray, at_s: tuple[float, ...] = (1.0, 2.0, 3.0)) -> dict[str, float]:
    """L2 error of predicted waypoints (K, 2) at the waypoint times closest to ``at_s``."""
    err = np.linalg.norm(np.asarray(pred_xy) - np.asarray(true_xy), axis=-1)
    return {f"l2_{t:g}s": float(err[int(np.argmin(np.abs(np.asarray(times_s) - t)))]) for t in at_s}


def collides(traj_xy: np.ndarray, traj_yaw: np.ndarray, ego_lw: tuple[float, float], rear_overhang_m: float,
             boxes_per_step: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> bool:
    """Whether the ego footprint along a trajectory overlaps any object box at the same step.

    ``boxes_per_step[k]`` = (centres (N, 2), yaws (N,), length-width (N, 2)) at waypoint k. Separating-axis
    test between oriented rectangles.
    """
    length, width = ego_lw
    for (x, y), yaw, (centres, yaws, lw) in zip(traj_xy, traj_yaw, boxes_per_step):
        ego_c = np.array([x, y]) + (length / 2 - rear_overhang_m) * np.array([np.cos(yaw), np.sin(yaw)])
        for c, a, (l, w) in zip(centres, yaws, lw):
            if _rects_overlap(ego_c, yaw, length, width, np.asarray(c), a, l, w):
                return True
    return False


def _rects_overlap(c1, a1, l1, w1, c2, a2, l2, w2) -> bool:
    def corners(c, a, l, w):
        u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        return np.array([c + sx * l / 2 * u + sy * w / 2 * v for sx in (-1, 1) for sy in (-1, 1)])

    p1, p2 = corners(c1, a1, l1, w1), corners(c2, a2, l2, w2)
    for a in (a1, a2):
        for axis in (np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])):
            s1, s2 = p1 @ axis, p2 @ axis
            if s1.max() < s2.min() or s2.max() < s1.min():
                return False
    return True
