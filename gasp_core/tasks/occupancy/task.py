"""4D occupancy as a :class:`~gasp_core.tasks.base.Task`: an implicit head queried at (x, y, z, t), scored on the
occupancy stage's future lidar queries and by depth rendering; zero-shot, each pre-trained model's own decoder."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F

from gasp_core.models.gasp_model import GaspModel
from gasp_core.targets import schema
from gasp_core.targets.occupancy import QuerySource
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import Evaluation, Item, Task, batched_queries, sigmoid, to_tensor
from gasp_core.tasks.heads import ImplicitHead
from gasp_core.tasks.occupancy.baseline import persistence_field
from gasp_core.tasks.occupancy.figure import depth_figure
from gasp_core.tasks.occupancy.labels import OccupancyLabels
from gasp_core.tasks.occupancy.render import render_depth


class OccupancyTask(Task):
    """4D occupancy: P(occupied at (x, y, z, t)) from future lidar rays; depth of rays rendered through the field.

    Scored only on queries and rays after the newest input sweep (t0's), from the lidar's returns (occupied
    behind a return, free before it): AP and IoU overall and per horizon, depth L1 / AbsRel. Missing-ray queries
    (free along rays that returned nothing, a label only GASP pre-trains on) are neither trained on nor mixed in:
    how many of them the head calls free is reported apart."""

    name = "occupancy"
    title = "4D occupancy"
    main_metric = ("AP", "higher")
    metric_titles = {"AP": "AP, future lidar queries"}
    secondary = (
        "IoU",
        "AP/1s",
        "AP/2s",
        "AP/3s",
        "IoU/1s",
        "IoU/2s",
        "IoU/3s",
        "depth_L1_m",
        "depth_AbsRel",
        "free_rate/missing",
    )
    label_builders = (OccupancyLabels,)
    figure = staticmethod(depth_figure)
    figure_rank = 3
    pr_curve = "future lidar queries"
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
        future = q[:, 3] > self.sample_array(item, "occ_t_min")
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
        logits = head(bev, to_tensor(np.stack(qs), bev.device))[..., 0]
        return F.binary_cross_entropy_with_logits(logits.float(), to_tensor(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        def field(it):
            bev = bev_of([it])
            return lambda q: sigmoid(batched_queries(head, bev, q)[:, 0])

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
            bev = model.encoder(to_tensor(self.sample_array(it, "voxels")[None], device))
            return lambda q: sigmoid(
                batched_queries(lambda b, x: model.occupancy_logits(b, x)[..., None], bev, q)[:, 0]
            )

        return self._score(field, items)

    def baseline(self, items):
        """Occupancy persists from the newest input sweep (:func:`persistence_field`)."""
        vox_cfg = self.labels.manifest["voxelizer"]
        return self._score(lambda it: persistence_field(self.sample_array(it, "voxels"), vox_cfg, self.scene), items)

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
        """Depth of each stored future ray through ``field`` (:func:`render_depth`), and its true range."""
        rows = {k: self.sample_rows(item, k, "ray_sample") for k in ("ray_origin", "ray_dir", "ray_t", "ray_range")}
        if not len(rows["ray_origin"]):
            return np.zeros(0), np.zeros(0)
        depth = render_depth(field, rows["ray_origin"], rows["ray_dir"], rows["ray_t"], self.scene, self.step_m)
        return depth, rows["ray_range"].astype(np.float64)
