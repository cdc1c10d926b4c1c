"""Trajectory metrics: L2 at 1 / 2 / 3 s and collisions of the ego footprint along a path with the stored boxes."""

from __future__ import annotations

import numpy as np

from gasp_core.tasks import metrics as M


def collisions(arrays: dict[str, np.ndarray], sample: int, xy: np.ndarray) -> np.ndarray:
    """(K,) whether the ego footprint at each waypoint ``xy`` (K, 2) of ``sample`` overlaps an object box of that
    step; ``arrays``: the log's task labels."""
    length, width, overhang = (float(v) for v in arrays["ego_dims"])
    b = arrays["boxes"][arrays["boxes"][:, 0] == sample]
    path = np.vstack([[0.0, 0.0], xy])
    step = np.diff(path, axis=0)
    yaw = np.arctan2(step[:, 1], step[:, 0])
    per_step = [(b[b[:, 1] == k, 2:4], b[b[:, 1] == k, 4], b[b[:, 1] == k, 5:7]) for k in range(len(xy))]
    return M.collides(xy, yaw, (length, width), overhang, per_step)


def score(
    pred: np.ndarray, true: np.ndarray, hits: np.ndarray, times: np.ndarray, at_s: tuple[float, ...]
) -> tuple[dict, np.ndarray]:
    """Metrics of predicted waypoints ``pred`` (S, K, 2) against ``true`` at ``times``, with their collisions ``hits``
    (S, K); and the per-sample L2 (S, len(at_s)) at ``at_s``."""
    l2 = np.array([list(M.l2_at(p, t, times, at_s).values()) for p, t in zip(pred, true)])
    out = {f"l2_{t:g}s": float(l2[:, k].mean()) for k, t in enumerate(at_s)}
    out["L2_avg"] = float(l2.mean())  # over 1, 2 and 3 s (those within the horizon)
    for t in at_s:
        k = int(np.argmin(np.abs(times - t)))
        out[f"collision_{t:g}s"] = float(hits[:, : k + 1].any(1).mean())
    out["collision_rate"] = float(hits.any(1).mean())
    return out, l2


def main_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
    """L2 avg of the head with odometry (or of the baseline)."""
    return stats["l2"].mean(-1) / weight


def blind_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
    """L2 avg of the BEV-only head (no odometry: what the encoder alone knows of the ego's motion); the baseline,
    which has no such head, keeps its own L2."""
    return stats["l2_blind" if "l2_blind" in stats else "l2"].mean(-1) / weight
