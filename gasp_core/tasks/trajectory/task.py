"""Ego trajectory as a :class:`~gasp_core.tasks.base.Task`: pooled heads with and without the ego's odometry."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gasp_core.tasks.base import Evaluation, Item, Task, to_tensor
from gasp_core.tasks.heads import TrajectoryHeads, constant_velocity
from gasp_core.tasks.trajectory import metrics
from gasp_core.tasks.trajectory.figure import trajectory_figure
from gasp_core.tasks.trajectory.labels import TrajectoryLabels


class TrajectoryTask(Task):
    """Ego trajectory: waypoints every 0.5 s to 3 s in the t0 frame. L2 at 1 / 2 / 3 s and the collision rate up
    to 1 / 2 / 3 s, for a head with the ego's odometry as input (main metric: its average L2) and one without
    (``/no_odometry``); constant velocity is the non-learned baseline."""

    name = "trajectory"
    title = "Ego trajectory"
    main_metric = ("L2_avg", "lower")
    metric_titles = {
        "L2_avg": "L2 avg 1-3 s, with odometry, m",
        "L2_avg/no_odometry": "L2 avg 1-3 s, BEV-only head (no odometry), m",
    }
    secondary = (
        "l2_1s",
        "l2_2s",
        "l2_3s",
        "collision_1s",
        "collision_2s",
        "collision_3s",
        "L2_avg/no_odometry",
        "l2_3s/no_odometry",
        "collision_3s/no_odometry",
    )
    label_builders = (TrajectoryLabels,)
    figure = staticmethod(trajectory_figure)
    figure_rank = 2
    heads = {"odometry": "", "blind": "/no_odometry"}
    main_from_stats = staticmethod(metrics.main_from_stats)
    blind_from_stats = staticmethod(metrics.blind_from_stats)
    co_primary = (("L2_avg/no_odometry", "lower", metrics.blind_from_stats),)

    @property
    def selection(self):
        return {part: (f"L2_avg{suffix}", "lower") for part, suffix in self.heads.items()}

    def head(self, feat_dim):
        past_steps = self.labels.log(next(iter(self.labels.manifest["logs"])))["ego_past"].shape[1]
        return TrajectoryHeads(feat_dim, self.label_cfg.waypoint_times_s, past_steps, self.cfg.head)

    def past(self, items: list[Item], device) -> Tensor:
        """The items' odometry (B, P, 3) as a tensor."""
        return to_tensor(np.stack([self.sample_array(it, "ego_past") for it in items]), device)

    def loss(self, head, bev, items, rng):
        y = to_tensor(np.stack([self.sample_array(it, "waypoints") for it in items]), bev.device)
        preds = head(bev, self.past(items, bev.device))
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
            out = head(bev_of([it]), self.past([it], device))
            for part in self.heads:
                preds[part].append(out[part][0].float().cpu().numpy().astype(np.float64))
        scores, stats = {}, {}
        for part, suffix in self.heads.items():
            m, l2 = self.score(np.stack(preds[part]), items)
            scores.update({f"{k}{suffix}": v for k, v in m.items()})
            stats[f"l2{suffix}"] = l2
        true = np.stack([self.sample_array(it, "waypoints") for it in items]).astype(np.float64)
        scores["collision_rate_true_path"] = float(
            np.mean([self.collisions(it, t).any() for it, t in zip(items, true)])
        )
        qual = {
            "pred": preds["odometry"][0],
            "pred_no_odometry": preds["blind"][0],
            "true": true[0],
            "constant_velocity": self.constant_velocity([items[0]])[0],
            "times": np.asarray(self.label_cfg.waypoint_times_s),
        }
        return Evaluation(scores, qual, {"l2": stats["l2"], "l2_blind": stats["l2/no_odometry"]})

    def constant_velocity(self, items: list[Item]) -> np.ndarray:
        """The items' constant-velocity waypoints (B, K, 2)."""
        times = torch.tensor(self.label_cfg.waypoint_times_s, dtype=torch.float32)
        return constant_velocity(self.past(items, torch.device("cpu")), times).numpy().astype(np.float64)

    def baseline(self, items):
        """Constant velocity: the odometry's last velocity held for 3 s."""
        m, l2 = self.score(self.constant_velocity(items), items)
        return Evaluation(m, {}, {"l2": l2})

    def score(self, pred: np.ndarray, items: list[Item]) -> tuple[dict, np.ndarray]:
        """Metrics of predicted waypoints (S, K, 2), and the per-sample L2 (S, len(at_s)) at ``at_s``."""
        times = np.asarray(self.label_cfg.waypoint_times_s)
        true = np.stack([self.sample_array(it, "waypoints") for it in items]).astype(np.float64)
        hits = np.stack([self.collisions(it, p) for it, p in zip(items, pred)])  # (S, K)
        return metrics.score(pred, true, hits, times, self.at_s)

    def collisions(self, item: Item, xy: np.ndarray) -> np.ndarray:
        """(K,) whether the ego footprint at each waypoint overlaps an object box of that step."""
        return metrics.collisions(self.labels.log(item[0]), item[1], xy)
