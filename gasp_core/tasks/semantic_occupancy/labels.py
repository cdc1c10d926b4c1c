"""4D semantic occupancy labels: the class at 4D points (stored occupancy queries and points inside boxes), from the
boxes at each point's own time."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import StoredLog
from gasp_core.models.config import VoxelizerConfig
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.label_builder import LabelBuilder
from gasp_core.tasks.labels import Objects, objects_at, tracks_of

SEMANTIC_CLASSES = ("background", "vehicle", "pedestrian", "cyclist", "other")


def semantic_occupancy(log: StoredLog, t0_ns: int, xyzt: np.ndarray, max_gap_s: float = 0.6) -> np.ndarray:
    """(N,) class of each 4D query: 1 + UnifiedCategory inside an object's box at the query's own time, else 0.

    Boxes are those of :func:`objects_at` at each query's time (to the nanosecond). Between two consecutive
    annotation times the set of tracks and their bracketing annotations is fixed, so each such interval takes one
    lookup and the interpolation is done per query.
    """
    tr = tracks_of(log)
    label = np.zeros(len(xyzt), np.int64)
    if not len(tr.ts) or not len(xyzt):
        return label
    t_ns = t0_ns + np.round(np.asarray(xyzt[:, 3], np.float64) * 1e9).astype(np.int64)
    ann = np.unique(tr.ts)
    pos = np.searchsorted(ann, t_ns)
    exact = (pos < len(ann)) & (ann[np.minimum(pos, len(ann) - 1)] == t_ns)
    group = np.where(exact, 2 * pos, 2 * pos - 1)  # even: at annotation time pos; odd: between pos - 1 and pos
    t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
    yaw_offset = np.arctan2(t0_T_city[1, 0], t0_T_city[0, 0])
    for g in np.unique(group):
        m = np.flatnonzero(group == g)
        tracks, lo, hi, _ = tr.at(int(t_ns[m[0]]), max_gap_s)
        if not len(tracks):
            continue
        span = (tr.ts[hi] - tr.ts[lo]).astype(np.float64)
        w = np.where(span > 0, (t_ns[m, None] - tr.ts[lo]) / np.where(span > 0, span, 1.0), 0.0)  # (M, N)
        centre = (1 - w)[..., None] * tr.center[lo] + w[..., None] * tr.center[hi]
        centre = centre @ t0_T_city[:3, :3].T + t0_T_city[:3, 3]
        dyaw = np.arctan2(np.sin(tr.yaw[hi] - tr.yaw[lo]), np.cos(tr.yaw[hi] - tr.yaw[lo]))
        yaw = tr.yaw[lo] + w * dyaw + yaw_offset
        d = xyzt[m, None, :3] - centre
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
        size = tr.size[lo]
        inside = (np.abs(lx) <= size[:, 0] / 2) & (np.abs(ly) <= size[:, 1] / 2) & (np.abs(d[..., 2]) <= size[:, 2] / 2)
        hit = inside.any(1)
        last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)  # the last containing box wins
        label[m[hit]] = tr.category[lo][last[hit]] + 1
    return label


def in_box_points(obj: Objects, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points spread over the objects' boxes (one object per point, chosen uniformly)."""
    if len(obj.category) == 0 or n <= 0:
        return np.zeros((0, 3))
    k = rng.integers(len(obj.category), size=n)
    local = rng.uniform(-0.5, 0.5, (n, 3)) * obj.size_lwh[k]
    c, s = np.cos(obj.yaw[k]), np.sin(obj.yaw[k])
    return obj.center[k] + np.column_stack(
        [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]]
    )


class SemanticOccupancyLabels(LabelBuilder):
    """``sem_xyzt``, ``sem_class``, ``sem_sample``: 4D queries in the extent and their class (0 background,
    1 + UnifiedCategory): ``semantic_from_occupancy`` of the stored occupancy queries (surfaces and free space) and
    ``semantic_in_boxes`` points inside boxes, spread over the horizon."""

    keys = ("sem_xyzt", "sem_class", "sem_sample")

    @classmethod
    def manifest(cls, scene: SceneConfig, vox: VoxelizerConfig, cfg: TaskLabelsConfig) -> dict:
        return {"semantic_classes": list(SEMANTIC_CLASSES)}

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        ctx, log = self.ctx, self.ctx.log
        batch = ctx.occupancy_queries.get_batch(sample.index)
        q = np.column_stack([batch.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "z_m", "t_s")])
        q = q[ctx.rng.choice(len(q), min(len(q), ctx.cfg.semantic_from_occupancy), replace=False)]
        steps = len(ctx.cfg.forecast_times_s)
        per_time = max(1, ctx.cfg.semantic_in_boxes // steps)
        extra = []
        for t in np.linspace(0.0, ctx.scene.horizon_s, steps):
            pts = in_box_points(objects_at(log, sample.t0_ns, sample.t0_ns + int(round(t * 1e9))), ctx.rng, per_time)
            extra.append(np.column_stack([pts, np.full(len(pts), t)]))
        q = np.concatenate([q, *extra])
        inside = np.all((q[:, :3] >= ctx.scene.box_min) & (q[:, :3] <= ctx.scene.box_max), axis=1)
        q = q[inside]
        return {
            "sem_xyzt": q.astype(np.float32),
            "sem_class": semantic_occupancy(log, sample.t0_ns, q).astype(np.int8),
            "sem_sample": np.full(len(q), index, np.int32),
        }

    @staticmethod
    def log_metrics(arrays):
        return {"semantic_object_fraction": float((arrays["sem_class"] > 0).mean())}

    @staticmethod
    def stage_metrics(per_log):
        return {"semantic_object_fraction": round(float(np.mean([r["semantic_object_fraction"] for r in per_log])), 4)}
