"""Ego trajectory: future waypoints with and without odometry, against constant velocity."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Item, Task, _t
from gasp_core.tasks.heads import TrajectoryHeads, constant_velocity

log = logging.getLogger(__name__)


class TrajectoryTask(Task):
    """Ego trajectory: waypoints every 0.5 s to 3 s in the t0 frame. L2 at 1 / 2 / 3 s and the collision rate up
    to 1 / 2 / 3 s, for a head with the ego's odometry as input (main metric: its average L2) and one without
    (``/no_odometry``); constant velocity is the non-learned baseline."""

    name = "trajectory"
    heads = {"odometry": "", "blind": "/no_odometry"}

    @property
    def selection(self):
        return {part: (f"L2_avg{suffix}", "lower") for part, suffix in self.heads.items()}

    def head(self, feat_dim):
        past_steps = self.labels.log(next(iter(self.labels.manifest["logs"])))["ego_past"].shape[1]
        return TrajectoryHeads(feat_dim, self.label_cfg.waypoint_times_s, past_steps, self.cfg.head)

    def _past(self, items, device) -> Tensor:
        return _t(np.stack([self._arr(it, "ego_past") for it in items]), device)

    def loss(self, head, bev, items, rng):
        y = _t(np.stack([self._arr(it, "waypoints") for it in items]), bev.device)
        preds = head(bev, self._past(items, bev.device))
        return sum(F.smooth_l1_loss(p.float(), y) for p in preds.values())

    @property
    def at_s(self) -> tuple[float, ...]:
        times = np.asarray(self.label_cfg.waypoint_times_s)
        return tuple(t for t in (1.0, 2.0, 3.0) if np.isclose(times, t).any()) or (float(times.max()),)

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        device = next(head.parameters()).device
        preds: dict[str, list] = {part: [] for part in self.heads}
        for it in items:
            out = head(bev_of([it]), self._past([it], device))
            for part in self.heads:
                preds[part].append(out[part][0].float().cpu().numpy().astype(np.float64))
        metrics, stats, qual = {}, {}, {}
        for part, suffix in self.heads.items():
            m, l2 = self.score(np.stack(preds[part]), items)
            metrics.update({f"{k}{suffix}": v for k, v in m.items()})
            stats[f"l2{suffix}"] = l2
        true = np.stack([self._arr(it, "waypoints") for it in items]).astype(np.float64)
        metrics["collision_rate_true_path"] = float(
            np.mean([self.collisions(it, t).any() for it, t in zip(items, true)])
        )
        qual = {
            "pred": preds["odometry"][0],
            "pred_no_odometry": preds["blind"][0],
            "true": true[0],
            "constant_velocity": self._constant_velocity([items[0]])[0],
            "times": np.asarray(self.label_cfg.waypoint_times_s),
        }
        return Evaluation(metrics, qual, {"l2": stats["l2"], "l2_blind": stats["l2/no_odometry"]})

    def _constant_velocity(self, items: list[Item]) -> np.ndarray:
        times = torch.tensor(self.label_cfg.waypoint_times_s, dtype=torch.float32)
        return constant_velocity(self._past(items, torch.device("cpu")), times).numpy().astype(np.float64)

    def baseline(self, items):
        """Constant velocity: the odometry's last velocity held for 3 s."""
        m, l2 = self.score(self._constant_velocity(items), items)
        return Evaluation(m, {}, {"l2": l2})

    def score(self, pred: np.ndarray, items: list[Item]) -> tuple[dict, np.ndarray]:
        """Metrics of predicted waypoints (S, K, 2), and the per-sample L2 (S, len(at_s)) at ``at_s``."""
        times = np.asarray(self.label_cfg.waypoint_times_s)
        true = np.stack([self._arr(it, "waypoints") for it in items]).astype(np.float64)
        l2 = np.array([list(M.l2_at(p, t, times, self.at_s).values()) for p, t in zip(pred, true)])
        hits = np.stack([self.collisions(it, p) for it, p in zip(items, pred)])  # (S, K)
        out = {f"l2_{t:g}s": float(l2[:, k].mean()) for k, t in enumerate(self.at_s)}
        out["L2_avg"] = float(l2.mean())  # over 1, 2 and 3 s (those within the horizon)
        for t in self.at_s:
            k = int(np.argmin(np.abs(times - t)))
            out[f"collision_{t:g}s"] = float(hits[:, : k + 1].any(1).mean())
        out["collision_rate"] = float(hits.any(1).mean())
        return out, l2

    @staticmethod
    def main_from_stats(stats, weight):
        return stats["l2"].mean(-1) / weight

    @staticmethod
    def blind_from_stats(stats, weight):
        """L2 avg of the BEV-only head (no odometry: what the encoder alone knows of the ego's motion); the
        baseline, which has no such head, keeps its own L2."""
        return stats["l2_blind" if "l2_blind" in stats else "l2"].mean(-1) / weight

    co_primary = (("L2_avg/no_odometry", "lower", blind_from_stats),)

    def collisions(self, item: Item, xy: np.ndarray) -> np.ndarray:
        """(K,) whether the ego footprint at each waypoint overlaps an object box of that step."""
        arrays = self.labels.log(item[0])
        length, width, overhang = (float(v) for v in arrays["ego_dims"])
        b = arrays["boxes"][arrays["boxes"][:, 0] == item[1]]
        path = np.vstack([[0.0, 0.0], xy])
        step = np.diff(path, axis=0)
        yaw = np.arctan2(step[:, 1], step[:, 0])
        per_step = [(b[b[:, 1] == k, 2:4], b[b[:, 1] == k, 4], b[b[:, 1] == k, 5:7]) for k in range(len(xy))]
        return M.collides(xy, yaw, (length, width), overhang, per_step)
