"""Fine-tuning heads (and optionally the encoder) for the five downstream tasks, and their evaluation.

Each task is a :class:`Task`: it builds its head, draws a training loss from a batch of samples and scores a
set of samples. :func:`finetune` trains every (label budget, seed) run of one (task, initialisation) pair;
:func:`evaluate_runs` scores saved runs on a split.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.data.schema import MapLayer, UnifiedCategory
from gasp_core.geometry.rays import ray_box_interval
from gasp_core.io import atomic_path, write_json_atomic
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.progress import progress as progress_bar
from gasp_core.targets import schema
from gasp_core.targets.occupancy import QuerySource
from gasp_core.tasks import metrics as M
from gasp_core.tasks.build import SEMANTIC_CLASSES, TaskLabels, forecast_grid
from gasp_core.tasks.config import MAIN_METRIC, FinetuneConfig, SplitsConfig, TaskLabelsConfig
from gasp_core.tasks.heads import ImplicitHead, MapHead, TrajectoryHeads, constant_velocity
from gasp_core.tasks.labels import FORECAST_CLASSES, MAP_CLASSES
from gasp_core.teacher.dinov2 import resolve_device

log = logging.getLogger(__name__)
Item = tuple[str, int]  # (log id, sample index in the log)


@dataclass
class Evaluation:
    """What scoring a head (or a non-learned baseline) on a set of samples gives."""

    metrics: dict[str, float]
    qualitative: dict[str, np.ndarray] = field(default_factory=dict)
    """Predictions on the first sample, for the report's figures."""
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-sample statistics (leading axis = the samples) of the main metric: ``Task.main_from_stats`` of their
    sum is the main metric; the report's bootstrap resamples them."""


class Task:
    """One downstream task over the task labels (and, for 4D occupancy, the stored ray queries)."""

    name = ""

    def __init__(self, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> None:
        self.labels, self.occupancy_dir, self.scene, self.cfg = labels, Path(occupancy_dir), scene, cfg
        self.label_cfg = from_dict(TaskLabelsConfig, labels.manifest["config"], f"{labels.root}/manifest.json config")

    @property
    def selection(self) -> dict[str, tuple[str, str]]:
        """Model selection on validation: head part ('' = the whole head) -> (metric, better) it is chosen by."""
        return {"": MAIN_METRIC[self.name]}

    def head(self, feat_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, bev: Tensor, items: list[Item], rng: np.random.Generator) -> Tensor:
        raise NotImplementedError

    def evaluate(self, head: nn.Module, bev_of, items: list[Item]) -> Evaluation:
        """Metrics, figures' arrays and bootstrap statistics; ``bev_of(items)`` gives the items' BEV features."""
        raise NotImplementedError

    def baseline(self, items: list[Item]) -> Evaluation | None:
        """A non-learned reference scored like a head (same metrics and statistics), or None."""
        return None

    @staticmethod
    def main_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
        """The main metric from per-sample statistics summed over samples (leading axis: bootstrap replicates;
        ``weight``: the number of samples in each)."""
        raise NotImplementedError

    def _arr(self, item: Item, key: str) -> np.ndarray:
        return self.labels.log(item[0])[key][item[1]]

    def _rows(self, item: Item, key: str, sample_key: str) -> np.ndarray:
        arrays = self.labels.log(item[0])
        return arrays[key][arrays[sample_key] == item[1]]


def _t(x, device) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


def _batched_queries(head: nn.Module, bev: Tensor, q: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Head outputs for many queries (N, D) on one sample's BEV (1, C, h, w), in chunks."""
    outs = []
    for i in range(0, len(q), chunk):
        outs.append(head(bev, _t(q[None, i : i + chunk], bev.device))[0].float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1))


class ForecastTask(Task):
    """BEV semantic forecasting: P(class covers (x, y) at t) for vehicle / pedestrian / cyclist. Main metric:
    vehicle AP (UnO's protocol, with vehicle soft-IoU beside it); every class is reported."""

    name = "forecast"

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.grid = forecast_grid(self.scene, self.label_cfg)
        self.times = np.asarray(self.label_cfg.forecast_times_s, np.float64)
        self.centres = self.grid.centres()

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, len(FORECAST_CLASSES), (0, 1, 3), self.scene, self.cfg.head)

    def _queries(self, cells: np.ndarray) -> np.ndarray:
        """Flat (time, row, col) indices -> (x, y, t)."""
        t_idx, cell = np.divmod(cells, len(self.centres))
        return np.column_stack([self.centres[cell], self.times[t_idx]])

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        n = self.cfg.queries
        for it in items:
            y = self._arr(it, "forecast")  # (T, C, H, W)
            flat = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])  # (T*H*W, C)
            pos = np.flatnonzero(flat.any(1))
            cells = rng.integers(len(flat), size=n)
            if len(pos):  # half the queries on object cells: objects cover < 1 % of the map
                cells[: n // 2] = rng.choice(pos, n // 2)
            qs.append(self._queries(cells))
            ys.append(flat[cells])
        logits = head(bev, _t(np.stack(qs), bev.device))
        return F.binary_cross_entropy_with_logits(logits.float(), _t(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        all_q = self._queries(np.arange(len(self.times) * len(self.centres)))
        probs = []
        for it in items:
            p = torch.sigmoid(torch.from_numpy(_batched_queries(head, bev_of([it]), all_q))).numpy()
            probs.append(p.reshape(len(self.times), *self.grid.shape, -1).transpose(0, 3, 1, 2))  # (T, C, H, W)
        return self.score(np.stack(probs), items)

    def score(self, P: np.ndarray, items: list[Item]) -> Evaluation:
        """Metrics of probabilities ``P`` (S, T, C, H, W) against the items' forecasts."""
        Y = np.stack([self._arr(it, "forecast") for it in items]).astype(bool)
        out: dict = {}
        aps = []
        for c, cls in enumerate(FORECAST_CLASSES):
            for k, t in enumerate(self.times):
                ap = M.average_precision(P[:, k, c], Y[:, k, c])
                out[f"AP/{cls.label}/{t:g}s"] = ap
                out[f"softIoU/{cls.label}/{t:g}s"] = M.soft_iou(P[:, k, c], Y[:, k, c])
                aps.append(ap)
            out[f"AP/{cls.label}"] = _nanmean([out[f"AP/{cls.label}/{t:g}s"] for t in self.times])
            out[f"softIoU/{cls.label}"] = _nanmean([out[f"softIoU/{cls.label}/{t:g}s"] for t in self.times])
        out["mAP"] = _nanmean(aps)
        out["softIoU"] = _nanmean([out[f"softIoU/{cls.label}"] for cls in FORECAST_CLASSES])
        vehicle = FORECAST_CLASSES.index(UnifiedCategory.VEHICLE)
        hist = np.stack(
            [
                [M.score_histogram(P[s, k, vehicle], Y[s, k, vehicle]) for k in range(len(self.times))]
                for s in range(len(P))
            ]
        )  # (S, T, 2, bins)
        return Evaluation(
            out,
            {
                "prob": P[0],
                "truth": Y[0],
                "times": self.times,
                "classes": np.array([c.label for c in FORECAST_CLASSES]),
            },
            {"vehicle_hist": hist},
        )

    @staticmethod
    def main_from_stats(stats, weight):
        with np.errstate(all="ignore"):
            return np.nanmean(M.ap_from_histogram(stats["vehicle_hist"]), axis=-1)


class OccupancyTask(Task):
    """4D occupancy: P(occupied at (x, y, z, t)) from future lidar rays; depth of rays rendered through the field.

    Scored only on queries and rays after the newest input sweep (t0's), from the lidar's returns (occupied
    behind a return, free before it): AP and IoU overall and per horizon, depth L1 / AbsRel. Missing-ray queries
    (free along rays that returned nothing, a label only GASP pre-trains on) are neither trained on nor mixed in:
    how many of them the head calls free is reported apart."""

    name = "occupancy"
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

    def baseline(self, items):
        """Occupancy persists from the newest input sweep: P(occupied) at (x, y, z) is the t0 sweep's voxel there
        (half weight) plus the occupied fraction of its 3 x 3 neighbourhood in that height bin, at every t."""
        vox_cfg = self.labels.manifest["voxelizer"]
        size, z_bins = float(vox_cfg["voxel_size_m"]), int(vox_cfg["z_bins"])
        x0, _, y0, _, z0, z1 = self.scene.extent_m

        def field(it):
            last = self._arr(it, "voxels")[-z_bins:].astype(np.float32)  # (Z, H, W): the t0 sweep
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


class SemanticOccupancyTask(Task):
    """4D semantic occupancy: the class (background or an object category) at (x, y, z, t)."""

    name = "semantic_occupancy"

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, len(SEMANTIC_CLASSES), (0, 1, 2, 3), self.scene, self.cfg.head)

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        for it in items:
            q, y = self._rows(it, "sem_xyzt", "sem_sample"), self._rows(it, "sem_class", "sem_sample")
            pick = rng.integers(len(q), size=self.cfg.queries)
            qs.append(q[pick])
            ys.append(y[pick])
        logits = head(bev, _t(np.stack(qs), bev.device))
        target = torch.as_tensor(np.stack(ys).astype(np.int64), device=bev.device)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten())

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        probs, ys, hists = [], [], []
        for it in items:
            logits = _batched_queries(head, bev_of([it]), self._rows(it, "sem_xyzt", "sem_sample"))
            p = torch.softmax(torch.from_numpy(logits), -1).numpy()
            y = self._rows(it, "sem_class", "sem_sample")
            probs.append(p)
            ys.append(y)
            hists.append(np.stack([M.score_histogram(p[:, c], y == c) for c in range(1, len(SEMANTIC_CLASSES))]))
        P, y = np.concatenate(probs), np.concatenate(ys)
        pred = P.argmax(1)
        out = {}
        for c, name in enumerate(SEMANTIC_CLASSES):
            if c:
                out[f"AP/{name}"] = M.average_precision(P[:, c], y == c)
            out[f"IoU/{name}"] = M.iou(pred == c, y == c)
        out["mAP"] = _nanmean([out[f"AP/{n}"] for n in SEMANTIC_CLASSES[1:]])
        out["mIoU"] = _nanmean([out[f"IoU/{n}"] for n in SEMANTIC_CLASSES])
        return Evaluation(out, self.bev_slice(head, bev_of, items[0]), {"hist": np.stack(hists)})

    @staticmethod
    def main_from_stats(stats, weight):
        with np.errstate(all="ignore"):
            return np.nanmean(M.ap_from_histogram(stats["hist"]), axis=-1)

    def bev_slice(self, head, bev_of, item: Item, z_m: float = 0.75) -> dict:
        """The predicted class over the forecasting grid at t0 and height ``z_m``, beside the boxes' BEV cover."""
        grid = forecast_grid(self.scene, self.label_cfg)
        xy = grid.centres()
        q = np.column_stack([xy, np.full(len(xy), z_m), np.zeros(len(xy))])
        pred = _batched_queries(head, bev_of([item]), q).argmax(1).reshape(grid.shape)
        cover = self._arr(item, "forecast")[0]  # (3, H, W) at the first forecast time (t0 when it is 0)
        truth = np.zeros(grid.shape, np.int64)
        for c in range(len(cover)):
            truth[cover[c].astype(bool)] = c + 1
        return {"pred": pred, "truth": truth, "classes": np.array(SEMANTIC_CLASSES)}


class MapTask(Task):
    """Map segmentation: main metric mIoU over the thin layers (crossings, lane dividers, road boundaries), the
    usual protocol; drivable area reported apart."""

    name = "map"
    main_layers = (MapLayer.PED_CROSSING, MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY)

    def head(self, feat_dim):
        return MapHead(feat_dim, len(MAP_CLASSES), tuple(self.labels.manifest["map_shape"][1:]), self.cfg.head)

    def loss(self, head, bev, items, rng):
        y = _t(np.stack([self._arr(it, "map") for it in items]), bev.device)
        logits = head(bev).float()
        # BCE plus a soft-Dice term per layer: thin layers (dividers, boundaries) cover a few % of the raster,
        # and BCE alone settles below the 0.5 threshold that IoU is measured at
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * y).sum((0, 2, 3)) + 1) / ((p + y).sum((0, 2, 3)) + 1)
        return F.binary_cross_entropy_with_logits(logits, y) + dice.mean()

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        P = np.concatenate([torch.sigmoid(head(bev_of([it]))).float().cpu().numpy() for it in items])
        Y = np.stack([self._arr(it, "map") for it in items]).astype(bool)
        out = {f"IoU/{name}": M.iou(P[:, k] >= 0.5, Y[:, k]) for k, name in enumerate(MAP_CLASSES)}
        out["mIoU"] = _nanmean([out[f"IoU/{n}"] for n in self.main_layers])
        out["mIoU_all"] = _nanmean([out[f"IoU/{n}"] for n in MAP_CLASSES])
        main = [MAP_CLASSES.index(n) for n in self.main_layers]
        counts = np.stack([[M.iou_counts(P[s, k] >= 0.5, Y[s, k]) for k in main] for s in range(len(P))])  # (S, L, 2)
        return Evaluation(out, {"prob": P[0], "truth": Y[0], "classes": np.array(MAP_CLASSES)}, {"iou_counts": counts})

    @staticmethod
    def main_from_stats(stats, weight):
        c = stats["iou_counts"]
        with np.errstate(all="ignore"):
            return np.nanmean(M.ratio(c[..., 0], c[..., 1]), axis=-1)


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


TASK_CLASSES: dict[str, type[Task]] = {
    c.name: c for c in (ForecastTask, OccupancyTask, SemanticOccupancyTask, MapTask, TrajectoryTask)
}


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def _nanstd(values) -> float:
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.std()) if len(v) else float("nan")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_task(name: str, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> Task:
    if name not in TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASK_CLASSES)}")
    return TASK_CLASSES[name](labels, occupancy_dir, scene, cfg)


def budget_logs(train_logs: list[str], fraction: float) -> list[str]:
    """The labelled training logs of a budget: the first max(1, round(fraction * n)) of a fixed shuffle, so
    smaller budgets are subsets of larger ones and every seed and initialisation sees the same labels."""
    order = [train_logs[i] for i in np.random.default_rng(0).permutation(len(train_logs))]
    return order[: max(1, int(round(fraction * len(order))))]


def items_of(labels: TaskLabels, logs: list[str]) -> list[Item]:
    return [(lid, s) for lid in logs for s in range(labels.manifest["logs"][lid])]


class Features:
    """BEV features of samples: computed once by a frozen encoder, or live from a trainable one."""

    def __init__(self, encoder: nn.Module, labels: TaskLabels, device: torch.device, frozen: bool) -> None:
        self.encoder, self.labels, self.device, self.frozen = encoder, labels, device, frozen
        self._cache: dict[Item, Tensor] = {}

    def voxels(self, items: list[Item]) -> Tensor:
        return _t(np.stack([self.labels.log(lid)["voxels"][s] for lid, s in items]), self.device)

    def __call__(self, items: list[Item]) -> Tensor:
        if not self.frozen and self.encoder.training:
            return self.encoder(self.voxels(items))
        missing = [it for it in items if it not in self._cache or not self.frozen]
        if missing:
            with torch.no_grad():  # plain tensors: the heads save them for their backward pass
                for i in range(0, len(missing), 8):
                    chunk = missing[i : i + 8]
                    for it, f in zip(chunk, self.encoder(self.voxels(chunk))):
                        self._cache[it] = f.clone()
        out = torch.stack([self._cache[it] for it in items])
        if not self.frozen:
            self._cache.clear()
        return out


def load_encoder(init_dir: Path, device: torch.device) -> nn.Module:
    """The BEV encoder of a pre-trained (or ``scratch``: seeded, untrained) model folder."""
    return load_pretrained(init_dir, device).encoder


def _lr(step: int, cfg: FinetuneConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))))


def train_run(
    task: Task,
    encoder_dir: Path,
    items: list[Item],
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    features: Features | None = None,
    val_items: list[Item] | None = None,
) -> tuple[nn.Module, nn.Module, list[float], dict]:
    """One fine-tuning run: returns (head, encoder, per-step losses, model selection record). With a frozen encoder,
    ``features`` (shared across runs of the same initialisation) caches the BEV features.

    With ``cfg.val_every[task]`` steps and ``val_items``, the head is scored on validation before the first step,
    every that many steps and at the end; each part of ``task.selection`` keeps its best state (ties go to the
    later step), so a head that starts as a baseline (trajectory: constant velocity) never ends worse than it on
    validation. With ``encoder: full`` the encoder follows the first part's choice."""
    torch.manual_seed(seed)
    frozen = cfg.encoder == "frozen"
    if features is None or not frozen:
        features = Features(load_encoder(encoder_dir, device), task.labels, device, frozen)
    encoder = features.encoder
    encoder.train(not frozen)
    encoder.requires_grad_(not frozen)
    head = task.head(_feat_dim(encoder)).to(device)
    params = list(head.parameters()) + ([] if frozen else list(encoder.parameters()))
    groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
    if not frozen:
        groups.append({"params": list(encoder.parameters()), "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr(s, cfg))
    rng = np.random.default_rng([seed, 1])
    use_amp = device.type == "cuda"
    every = int(cfg.val_every.get(task.name, 0)) if val_items else 0
    best: dict[str, tuple[float, dict, int]] = {}
    history: list[dict] = []
    val_features = features if frozen else Features(encoder, task.labels, device, False)
    first_part = next(iter(task.selection))

    def validate(step: int) -> None:
        head.eval()
        encoder.eval()
        ev = task.evaluate(head, val_features, val_items)
        record = {"step": step, "loss": _val_loss(task, head, val_features, val_items, cfg.batch_size)}
        head.train()
        encoder.train(not frozen)
        for part, (metric, better) in task.selection.items():
            value = ev.metrics.get(metric)
            record[metric] = value
            if value is None or math.isnan(value):
                continue
            score = value if better == "higher" else -value
            if part not in best or score >= best[part][0]:
                module = head if part == "" else getattr(head, part)
                state = {"head": copy.deepcopy(module.state_dict())}
                if not frozen and part == first_part:
                    state["encoder"] = copy.deepcopy(encoder.state_dict())
                best[part] = (score, state, step)
        history.append(record)

    losses = []
    if every:
        validate(0)
    for step in range(cfg.steps):
        batch = [items[i] for i in rng.integers(len(items), size=cfg.batch_size)]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            bev = features(batch)
            loss = task.loss(head, bev, batch, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if every and ((step + 1) % every == 0 or step + 1 == cfg.steps):
            validate(step + 1)
    for part, (_, state, _) in best.items():
        (head if part == "" else getattr(head, part)).load_state_dict(state["head"])
        if "encoder" in state:
            encoder.load_state_dict(state["encoder"])
    head.eval()
    encoder.eval()
    selection = (
        {"selected_step": {part or "head": step for part, (_, _, step) in best.items()}, "history": history}
        if every
        else {}
    )
    return head, encoder, losses, selection


def _val_loss(task: Task, head: nn.Module, features: Features, items: list[Item], batch_size: int) -> float:
    """The training loss on validation samples, on the same queries at every call (a fixed generator of its own:
    the training draws are untouched), for the fine-tuning curves."""
    rng = np.random.default_rng([0, 2])
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            batch = items[i : i + batch_size]
            total += float(task.loss(head, features(batch), batch, rng)) * len(batch)
            n += len(batch)
    return total / max(n, 1)


def write_curves(live, prefix: str, losses: list[float], history: list[dict]) -> None:
    """One run's fine-tuning curves into a dvclive ``Live``: ``<prefix>/train_loss`` every step and, at each
    validation, ``<prefix>/val_loss`` and the selection metrics (``<prefix>/val_<metric>``)."""
    at = {int(r["step"]): r for r in history}
    for step in range(len(losses) + 1):
        live.step = step
        if step:
            live.log_metric(f"{prefix}/train_loss", losses[step - 1], timestamp=False)
        for key, value in at.get(step, {}).items():
            if key != "step" and value is not None and math.isfinite(value):
                live.log_metric(f"{prefix}/val_{key}", value, timestamp=False)


def _feat_dim(encoder: nn.Module) -> int:
    return encoder.lateral[0].out_channels


def pretrained_dir(init_dir: Path, pretrain_seed: int) -> Path:
    """The model folder of one pre-training seed of an initialisation (``models/pretrain/<init>/seed_<p>``)."""
    return Path(init_dir) / f"seed_{pretrain_seed}"


def run_name(pretrain_seed: int, seed: int) -> str:
    return f"pretrain_{pretrain_seed}/seed_{seed}"


def run_dir(root: Path, budget: str, pretrain_seed: int, seed: int) -> Path:
    return Path(root) / budget / run_name(pretrain_seed, seed)


def save_run(path: Path, head: nn.Module, encoder: nn.Module | None, info: dict) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "head.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp))
    if encoder is not None:
        with atomic_path(path / "encoder.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    write_json_atomic(path / "run.json", info)


def load_run(task: Task, path: Path, encoder_dir: Path, device: torch.device) -> tuple[nn.Module, nn.Module | None]:
    """A saved run's head and, when it fine-tuned the encoder, its encoder (safetensors only)."""
    from safetensors.torch import load_file

    if not (path / "head.safetensors").is_file():
        raise FileNotFoundError(f"{path / 'head.safetensors'} is missing: run the finetune stage first")
    encoder = None
    if (path / "encoder.safetensors").is_file():
        encoder = load_encoder(encoder_dir, device)
        encoder.load_state_dict(load_file(str(path / "encoder.safetensors")))
        encoder.eval()
    head = task.head(json.loads((path / "run.json").read_text())["feat_dim"]).to(device)
    head.load_state_dict(load_file(str(path / "head.safetensors")))
    return head.eval(), encoder


def finetune(
    task_name: str,
    init: str,
    labels_dir: Path,
    occupancy_dir: Path,
    init_dir: Path,
    out_dir: Path,
    scene: SceneConfig,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    pretrain_seeds: list[int] = (0,),
    progress: bool = True,
    live_dir: Path | None = None,
) -> dict:
    """Every (pre-training seed, budget, seed) run of one task and initialisation (``init_dir/seed_<p>`` holds
    pre-training seed p); saves heads under ``out_dir`` and returns metrics: the first and final training loss
    and the validation metrics of each run. With ``live_dir``, each run's curves (training loss per step,
    validation loss and metrics at each validation) go to a dvclive log there, one plot per run and quantity
    (``<budget>/pretrain_<p>/seed_<s>/train_loss``...)."""
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    val_items = items_of(labels, splits.val)
    result: dict = {"task": task_name, "init": init, "encoder": cfg.encoder, "runs": {}}
    bar = progress_bar(
        total=len(pretrain_seeds) * len(cfg.budgets) * len(cfg.seeds),
        desc=f"finetune {task_name}/{init}",
        unit="run",
        disable=not progress,
    )
    for p in pretrain_seeds:
        encoder_dir = pretrained_dir(init_dir, p)
        shared = Features(load_encoder(encoder_dir, device), labels, device, True) if cfg.encoder == "frozen" else None
        for budget, fraction in cfg.budgets.items():
            logs = budget_logs(splits.train, fraction)
            items = items_of(labels, logs)
            for seed in cfg.seeds:
                start = time.perf_counter()
                head, encoder, losses, selection = train_run(
                    task, encoder_dir, items, cfg, seed, device, shared, val_items
                )
                val = task.evaluate(
                    head, shared if shared is not None else Features(encoder, labels, device, True), val_items
                ).metrics
                info = {
                    "task": task_name,
                    "init": init,
                    "pretrain_seed": p,
                    "budget": budget,
                    "fraction": fraction,
                    "seed": seed,
                    "labelled_logs": logs,
                    "samples": len(items),
                    "feat_dim": _feat_dim(encoder),
                    "loss_first": losses[0],
                    "loss_final": float(np.mean(losses[-10:])),
                    "val": val,
                    **selection,
                    "config": asdict(cfg),
                }
                save_run(run_dir(out_dir, budget, p, seed), head, None if cfg.encoder == "frozen" else encoder, info)
                result["runs"][f"{budget}/{run_name(p, seed)}"] = {
                    "loss_first": round(losses[0], 5),
                    "loss_final": round(info["loss_final"], 5),
                    "val": _round(val),
                    **({"selected_step": selection["selected_step"]} if selection else {}),
                }
                # timings go to the log only: metrics stay byte-identical across reruns
                log.info(
                    "%s/%s pretrain seed %d %s seed %d: %d steps in %.1f s",
                    task_name,
                    init,
                    p,
                    budget,
                    seed,
                    cfg.steps,
                    time.perf_counter() - start,
                )
                if live is not None:
                    write_curves(live, f"{budget}/{run_name(p, seed)}", losses, selection.get("history", []))
                bar.update()
    bar.close()
    if live is not None:
        live.end()
    return result


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Plain arrays (no pickles) as one compressed npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_qualitative(path: Path, qualitative: dict[str, dict]) -> Path:
    """The evaluate stage's predictions per init (``{init: {name: array}}``) as one npz, written atomically."""
    return save_arrays(path, {f"{init}/{k}": v for init, q in qualitative.items() for k, v in q.items()})


def load_qualitative(path: Path) -> dict[str, dict]:
    """Inverse of :func:`save_qualitative`."""
    out: dict[str, dict] = {}
    for key, value in load_arrays(path).items():
        init, name = key.split("/", 1)
        out.setdefault(init, {})[name] = value
    return out


STATS_SEP = "|"
BASELINE = "baseline"


def stats_key(init: str, budget: str, run: str, name: str) -> str:
    return STATS_SEP.join((init, budget, run, name))


def split_stats(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """``{init: {budget: {run: {name: array}}}}`` from what :func:`evaluate_runs` stores (the baseline under
    init ``baseline``, budget and run ``-``)."""
    out: dict = {}
    for key, value in arrays.items():
        if STATS_SEP not in key:
            continue
        init, budget, run, name = key.split(STATS_SEP)
        out.setdefault(init, {}).setdefault(budget, {}).setdefault(run, {})[name] = value
    return out


def evaluate_runs(
    task_name: str,
    inits: dict[str, Path],
    runs_root: Path,
    labels_dir: Path,
    occupancy_dir: Path,
    scene: SceneConfig,
    splits: SplitsConfig,
    cfg: FinetuneConfig,
    pretrain_seeds: list[int] = (0,),
    split: str = "test",
    progress: bool = True,
) -> tuple[dict, dict, dict]:
    """Score every saved run of a task on ``split``, and the task's non-learned baseline where it has one.

    Returns (metrics: per init / budget the mean and std over runs and each run's metrics, plus ``baseline``;
    qualitative arrays per init of its first run on the split's first sample; per-sample statistics of every run
    and of the baseline for the report's bootstrap, keyed by :func:`stats_key`, with ``sample_log`` giving each
    sample's log index in the split)."""
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    logs = list(getattr(splits, split))
    items = items_of(labels, logs)
    metrics: dict = {"task": task_name, "split": split, "samples": len(items), "logs": len(logs), "results": {}}
    qualitative: dict = {}
    stats: dict[str, np.ndarray] = {"sample_log": np.array([logs.index(lid) for lid, _ in items], np.int64)}
    runs = [(p, s) for p in pretrain_seeds for s in cfg.seeds]
    bar = progress_bar(
        total=len(inits) * len(cfg.budgets) * len(runs), desc=f"evaluate {task_name}", unit="run", disable=not progress
    )
    for init, init_dir in inits.items():
        per_run: dict[str, dict[str, dict]] = {b: {} for b in cfg.budgets}
        for p in pretrain_seeds:
            encoder_dir = pretrained_dir(init_dir, p)
            shared = Features(load_encoder(encoder_dir, device), labels, device, True)
            for budget in cfg.budgets:
                for seed in cfg.seeds:
                    head, encoder = load_run(
                        task, run_dir(Path(runs_root) / init, budget, p, seed), encoder_dir, device
                    )
                    ev = task.evaluate(
                        head, shared if encoder is None else Features(encoder, labels, device, True), items
                    )
                    per_run[budget][run_name(p, seed)] = ev.metrics
                    stats.update({stats_key(init, budget, run_name(p, seed), k): v for k, v in ev.stats.items()})
                    if init not in qualitative and ev.qualitative:
                        qualitative[init] = ev.qualitative
                    bar.update()
        for budget, by_run in per_run.items():
            keys = next(iter(by_run.values())).keys()
            metrics["results"].setdefault(init, {})[budget] = {
                "mean": _round({k: _nanmean([r[k] for r in by_run.values()]) for k in keys}),
                "std": _round({k: _nanstd([r[k] for r in by_run.values()]) for k in keys}),
                "runs": {name: _round(r) for name, r in by_run.items()},
            }
    bar.close()
    base = task.baseline(items)
    if base is not None:
        metrics["baseline"] = _round(base.metrics)
        stats.update({stats_key(BASELINE, "-", "-", k): v for k, v in base.stats.items()})
    return metrics, qualitative, stats


def _round(d: dict, digits: int = 5) -> dict:
    return {
        k: (round(float(v), digits) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None)
        for k, v in d.items()
    }
