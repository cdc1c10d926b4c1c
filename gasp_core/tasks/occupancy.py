"""4D occupancy: the occupancy of points in space and future time, from the pre-training ray queries."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F

from gasp_core.geometry.rays import ray_box_interval
from gasp_core.models.gasp_model import GaspModel
from gasp_core.models.voxelizer import height_bins
from gasp_core.targets import schema
from gasp_core.targets.occupancy import QuerySource
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Item, Task, _batched_queries, _sigmoid, _t
from gasp_core.tasks.heads import ImplicitHead

log = logging.getLogger(__name__)


class OccupancyTask(Task):
    """4D occupancy: P(occupied at (x, y, z, t)) from future lidar rays; depth of rays rendered through the field.

    Scored only on queries and rays after the newest input sweep (t0's), from the lidar's returns (occupied
    behind a return, free before it): AP and IoU overall and per horizon, depth L1 / AbsRel. Missing-ray queries
    (free along rays that returned nothing, a label only GASP pre-trains on) are neither trained on nor mixed in:
    how many of them the head calls free is reported apart."""

    name = "occupancy"
    histogram_stats = ("hist",)
    eval_queries = 5000
    step_m = 0.5
    horizons_s = (1.0, 2.0, 3.0)

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self._files: dict = {}

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, 1, (0, 1, 2, 3), self.scene, self.cfg.head)

    def _queries(self, item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries (Q, 4), occupied (Q,), source (Q,)) of the item's stored occupancy queries."""
        if item[0] not in self._files:
            self._files[item[0]] = ipc.open_file(
                pa.memory_map(str(self.occupancy_dir / item[0] / schema.OCCUPANCY_FILE))
            )
        b = self._files[item[0]].get_batch(item[1])
        q = np.column_stack([b.column(c).to_numpy().astype(np.float32) for c in ("x_m", "y_m", "z_m", "t_s")])
        return q, b.column("occupied").to_numpy().astype(np.float32), b.column("source").to_numpy()

    def eval_queries_of(self, item: Item) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The item's scored queries after its newest input sweep: ``lidar`` (returns and free space before them,
        up to ``eval_queries``, a fixed draw) and ``missing`` (free along rays without a return)."""
        q, y, src = self._queries(item)
        future = q[:, 3] > self._arr(item, "occ_t_min")
        out = {}
        for name, keep in (
            ("lidar", future & (src != QuerySource.MISSING)),
            ("missing", future & (src == QuerySource.MISSING)),
        ):
            idx = np.flatnonzero(keep)
            idx = np.sort(
                np.random.default_rng([item[1], len(q)]).choice(idx, min(len(idx), self.eval_queries), replace=False)
            )
            out[name] = (q[idx], y[idx])
        return out

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        for it in items:
            q, y, src = self._queries(it)
            pick = rng.choice(np.flatnonzero(src != QuerySource.MISSING), size=self.cfg.queries)
            qs.append(q[pick])
            ys.append(y[pick])
        logits = head(bev, _t(np.stack(qs), bev.device))[..., 0]
        return F.binary_cross_entropy_with_logits(logits.float(), _t(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        def field(it):
            bev = bev_of([it])
            return lambda q: _sigmoid(_batched_queries(head, bev, q)[:, 0])

        return self._score(field, items)

    @torch.no_grad()
    def zero_shot(self, model: GaspModel, items: list[Item]) -> Evaluation | None:
        """UnO's zero-shot protocol: P(occupied) = sigmoid of a pre-trained :class:`GaspModel`'s own occupancy
        decoder, fed the item's stored voxels and queried at raw (x, y, z, t) of the t0 frame, exactly as pre-training
        queried it (the model normalises them); scored by :meth:`_score` like a head. None without such a decoder."""
        if model.occupancy is None:
            return None
        vox = model.cfg.voxelizer
        stored = self.labels.manifest.get("voxelizer", {})
        if any(stored[k] != getattr(vox, k) for k in ("voxel_size_m", "z_bins") if k in stored):
            raise ValueError(f"the task labels' voxelizer {stored} is not the model's input {vox}")
        model.eval()
        device = next(model.parameters()).device

        def field(it):
            bev = model.encoder(_t(self._arr(it, "voxels")[None], device))
            return lambda q: _sigmoid(
                _batched_queries(lambda b, x: model.occupancy_logits(b, x)[..., None], bev, q)[:, 0]
            )

        return self._score(field, items)

    def baseline(self, items):
        """Occupancy persists from the newest input sweep: P(occupied) at (x, y, z) is the t0 sweep's voxel there
        (half weight) plus the occupied fraction of its 3 x 3 neighbourhood in that height bin, at every t."""
        vox_cfg = self.labels.manifest["voxelizer"]
        size, z_bins = float(vox_cfg["voxel_size_m"]), int(vox_cfg["z_bins"])
        x0, _, y0, _, z0, z1 = self.scene.extent_m

        def field(it):
            levels = len(vox_cfg.get("intensity_levels", ()))
            last = height_bins(self._arr(it, "voxels"), z_bins, levels).astype(np.float32)  # (Z, H, W): the t0 sweep
            pad = np.pad(last, ((0, 0), (1, 1), (1, 1)))
            h, w = last.shape[1:]
            near = sum(pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
            score = 0.5 * last + 0.5 * near

            def prob(q):
                ix = np.floor((q[:, 0] - x0) / size).astype(np.int64)
                iy = np.floor((q[:, 1] - y0) / size).astype(np.int64)
                iz = np.floor((q[:, 2] - z0) / ((z1 - z0) / z_bins)).astype(np.int64)
                ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (iz >= 0) & (iz < z_bins)
                p = np.zeros(len(q))
                p[ok] = score[iz[ok], iy[ok], ix[ok]]
                return p

            return prob

        return self._score(field, items)

    def _score(self, field_of, items: list[Item]) -> Evaluation:
        """Metrics of the occupancy fields ``field_of(item)`` (queries (Q, 4) -> P(occupied) (Q,)) on the items."""
        scores, labels, times, free_missing, l1, rel, hists = [], [], [], [], [], [], []
        qual = {}
        for it in items:
            field = field_of(it)
            sets = self.eval_queries_of(it)
            q, y = sets["lidar"]
            s = field(q)
            scores.append(s)
            labels.append(y)
            times.append(q[:, 3])
            hists.append(M.score_histogram(s, y))
            if len(sets["missing"][0]):
                free_missing.append(field(sets["missing"][0]) < 0.5)
            depth, true = self.render(field, it)
            l1.append(np.abs(depth - true))
            rel.append(np.abs(depth - true) / true)
            if not qual:
                qual = {"depth": depth, "true_depth": true}
        s, y, t = np.concatenate(scores), np.concatenate(labels).astype(bool), np.concatenate(times)
        l1, rel = np.concatenate(l1), np.concatenate(rel)
        out = {
            "AP": M.average_precision(s, y),
            "IoU": M.iou(s >= 0.5, y),
            "depth_L1_m": float(l1.mean()) if len(l1) else None,
            "depth_AbsRel": float(rel.mean()) if len(rel) else None,
            "free_rate/missing": float(np.concatenate(free_missing).mean()) if free_missing else None,
        }
        lo = 0.0
        for h in self.horizons_s:
            if lo >= self.scene.horizon_s - 1e-9:
                break
            m = (t > lo) & (t <= h + 1e-6)
            out[f"AP/{h:g}s"] = M.average_precision(s[m], y[m]) if m.any() else None
            out[f"IoU/{h:g}s"] = M.iou(s[m] >= 0.5, y[m]) if m.any() else None
            lo = h
        return Evaluation(out, qual, {"hist": np.stack(hists)})

    @staticmethod
    def main_from_stats(stats, weight):
        return M.ap_from_histogram(stats["hist"])

    def render(self, field, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """Depth of each stored future ray: the first point along it where ``field`` (queries (Q, 4) ->
        P(occupied)) reaches 0.5, linearly interpolated between steps of ``step_m``, or where it leaves the scene."""
        o, d = self._rows(item, "ray_origin", "ray_sample"), self._rows(item, "ray_dir", "ray_sample")
        t, true = self._rows(item, "ray_t", "ray_sample"), self._rows(item, "ray_range", "ray_sample")
        if not len(o):
            return np.zeros(0), np.zeros(0)
        _, t_out = ray_box_interval(o.astype(np.float64), d.astype(np.float64), self.scene.box_min, self.scene.box_max)
        steps = np.arange(self.step_m, float(t_out.max()) + self.step_m, self.step_m)
        pts = o[:, None, :] + d[:, None, :] * steps[None, :, None]
        q = np.concatenate([pts, np.broadcast_to(t[:, None, None], (*pts.shape[:2], 1))], axis=-1).reshape(-1, 4)
        p = np.asarray(field(q), np.float64).reshape(len(o), len(steps))
        p[steps[None, :] > t_out[:, None]] = 0.0
        hit = p >= 0.5
        first = np.where(hit.any(1), hit.argmax(1), -1)
        depth = np.minimum(t_out, steps[-1])
        for r in np.flatnonzero(first >= 0):
            k = first[r]
            if k == 0:
                depth[r] = steps[0]
            else:
                p0, p1 = p[r, k - 1], p[r, k]
                depth[r] = steps[k - 1] + (0.5 - p0) / max(p1 - p0, 1e-6) * self.step_m
        return depth, true.astype(np.float64)
