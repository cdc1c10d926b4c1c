"""Trajectory labels: the ego's future waypoints, its odometry at the input sweeps and the boxes it may hit."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import StoredLog
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.label_builder import LabelBuilder, check_times
from gasp_core.tasks.labels import objects_at


def ego_waypoints(log: StoredLog, t0_ns: int, times_s: np.ndarray) -> np.ndarray:
    """(K, 2) future ego positions (rear axle) in the t0 frame."""
    poses = np.linalg.inv(log.city_T_ego(t0_ns)[0]) @ log.city_T_ego(
        t0_ns + np.round(np.asarray(times_s) * 1e9).astype(np.int64)
    )
    return poses[:, :2, 3]


class TrajectoryLabels(LabelBuilder):
    """``waypoints``: (S, K, 2) ego positions at ``waypoint_times_s``; ``ego_past``: (S, P, 3) (x, y, t <= 0) at the
    input sweeps' times (odometry: the ego status a planner has); ``boxes``: (B, 7) objects at those times as
    (sample, step, x, y, yaw, length, width) for the collision check; ``ego_dims``: the ego's length, width and rear
    overhang."""

    keys = ("waypoints", "ego_past", "boxes")
    stacked = frozenset(("waypoints", "ego_past"))
    log_keys = ("ego_dims",)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.times = np.asarray(ctx.cfg.waypoint_times_s, float)

    @classmethod
    def check(cls, scene: SceneConfig, cfg: TaskLabelsConfig) -> None:
        check_times(scene, cfg, "waypoint_times_s")

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        log = self.ctx.log
        past_t = (np.asarray(sample.past_ns, np.int64) - sample.t0_ns) / 1e9  # <= 0: the input sweeps' times
        boxes = []
        for k, t in enumerate(self.times):
            obj = objects_at(log, sample.t0_ns, sample.t0_ns + int(round(t * 1e9)))
            n = len(obj.category)
            boxes.append(
                np.column_stack([np.full(n, index), np.full(n, k), obj.center[:, :2], obj.yaw, obj.size_lwh[:, :2]])
            )
        return {
            "waypoints": ego_waypoints(log, sample.t0_ns, self.times).astype(np.float32),
            "ego_past": np.column_stack([ego_waypoints(log, sample.t0_ns, past_t), past_t]).astype(np.float32),
            "boxes": np.concatenate(boxes),
        }

    def finish(self, per_sample):
        out = super().finish(per_sample)
        out["boxes"] = out["boxes"].astype(np.float32).reshape(-1, 7)
        return out

    def log_arrays(self):
        ego = self.ctx.log.meta.ego
        return {"ego_dims": np.array([ego.length_m, ego.width_m, ego.rear_overhang_m], np.float32)}
