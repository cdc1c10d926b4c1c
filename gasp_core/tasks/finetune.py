"""Fine-tuning heads (and optionally the encoder) for the five downstream tasks, and their evaluation.

Each task is a :class:`Task`: it builds its head, draws a training loss from a batch of samples and scores a
set of samples. :func:`finetune` trains every (label budget, seed) run of one (task, initialisation) pair;
:func:`evaluate_runs` scores saved runs on a split.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.geometry.rays import ray_box_interval
from gasp_core.io import atomic_path, write_json_atomic
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.targets import schema
from gasp_core.tasks import metrics as M
from gasp_core.tasks.build import SEMANTIC_CLASSES, TaskLabels, forecast_grid
from gasp_core.tasks.config import FinetuneConfig, SplitsConfig, TaskLabelsConfig
from gasp_core.tasks.heads import ImplicitHead, MapHead, TrajectoryHead, constant_velocity
from gasp_core.tasks.labels import FORECAST_CLASSES, MAP_CLASSES
from gasp_core.teacher.dinov2 import resolve_device

log = logging.getLogger(__name__)
Item = tuple[str, int]  # (log id, sample index in the log)


class Task:
    """One downstream task over the task labels (and, for 4D occupancy, the stored ray queries)."""

    name = ""

    def __init__(self, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> None:
        self.labels, self.occupancy_dir, self.scene, self.cfg = labels, Path(occupancy_dir), scene, cfg
        self.label_cfg = from_dict(TaskLabelsConfig, labels.manifest["config"], f"{labels.root}/manifest.json config")

    def head(self, feat_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, bev: Tensor, items: list[Item], rng: np.random.Generator) -> Tensor:
        raise NotImplementedError

    def evaluate(self, head: nn.Module, bev_of, items: list[Item]) -> tuple[dict, dict]:
        """(metrics, qualitative arrays of the first item); ``bev_of(items)`` gives their BEV features."""
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
        outs.append(head(bev, _t(q[None, i:i + chunk], bev.device))[0].float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1))


class ForecastTask(Task):
    """BEV semantic forecasting: P(class covers (x, y) at t) for vehicle / pedestrian / cyclist."""

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
        probs, truth = [], []
        for it in items:
            p = torch.sigmoid(torch.from_numpy(_batched_queries(head, bev_of([it]), all_q))).numpy()
            probs.append(p.reshape(len(self.times), *self.grid.shape, -1).transpose(0, 3, 1, 2))  # (T, C, H, W)
            truth.append(self._arr(it, "forecast"))
        P, Y = np.stack(probs), np.stack(truth).astype(bool)
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
        return out, {"prob": P[0], "truth": Y[0], "times": self.times, "classes": [c.label for c in FORECAST_CLASSES]}


class OccupancyTask(Task):
    """4D occupancy: P(occupied at (x, y, z, t)) from future lidar rays; depth of rays rendered through the field."""

    name = "occupancy"
    eval_queries = 5000
    step_m = 0.5

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self._files: dict = {}

    def head(self, feat_dim):
        return ImplicitHead(feat_dim, 1, (0, 1, 2, 3), self.scene, self.cfg.head)

    def _queries(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        if item[0] not in self._files:
            self._files[item[0]] = ipc.open_file(pa.memory_map(str(self.occupancy_dir / item[0] / schema.OCCUPANCY_FILE)))
        b = self._files[item[0]].get_batch(item[1])
        q = np.column_stack([b.column(c).to_numpy().astype(np.float32) for c in ("x_m", "y_m", "z_m", "t_s")])
        return q, b.column("occupied").to_numpy().astype(np.float32)

    def loss(self, head, bev, items, rng):
        qs, ys = [], []
        for it in items:
            q, y = self._queries(it)
            pick = rng.integers(len(q), size=self.cfg.queries)
            qs.append(q[pick])
            ys.append(y[pick])
        logits = head(bev, _t(np.stack(qs), bev.device))[..., 0]
        return F.binary_cross_entropy_with_logits(logits.float(), _t(np.stack(ys), bev.device))

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        scores, labels, l1, rel = [], [], [], []
        qual = {}
        for it in items:
            bev = bev_of([it])
            q, y = self._queries(it)
            pick = np.random.default_rng([it[1], len(q)]).choice(len(q), min(len(q), self.eval_queries), replace=False)
            scores.append(_sigmoid(_batched_queries(head, bev, q[pick])[:, 0]))
            labels.append(y[pick])
            depth, true = self.render(head, bev, it)
            l1.append(np.abs(depth - true))
            rel.append(np.abs(depth - true) / true)
            if not qual:
                qual = {"depth": depth, "true_depth": true}
        s, y = np.concatenate(scores), np.concatenate(labels).astype(bool)
        l1, rel = np.concatenate(l1), np.concatenate(rel)
        return {"AP": M.average_precision(s, y), "IoU": M.iou(s >= 0.5, y), "depth_L1_m": float(l1.mean()),
                "depth_AbsRel": float(rel.mean())}, qual

    def render(self, head, bev, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """Depth of each stored future ray: the first point along it where P(occupied) >= 0.5 (linearly
        interpolated between steps of ``step_m``), or where it leaves the scene."""
        o, d = self._rows(item, "ray_origin", "ray_sample"), self._rows(item, "ray_dir", "ray_sample")
        t, true = self._rows(item, "ray_t", "ray_sample"), self._rows(item, "ray_range", "ray_sample")
        _, t_out = ray_box_interval(o.astype(np.float64), d.astype(np.float64), self.scene.box_min, self.scene.box_max)
        steps = np.arange(self.step_m, float(t_out.max()) + self.step_m, self.step_m)
        pts = o[:, None, :] + d[:, None, :] * steps[None, :, None]
        q = np.concatenate([pts, np.broadcast_to(t[:, None, None], (*pts.shape[:2], 1))], axis=-1).reshape(-1, 4)
        p = _sigmoid(_batched_queries(head, bev, q)[:, 0]).reshape(len(o), len(steps))
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
        probs, ys = [], []
        for it in items:
            logits = _batched_queries(head, bev_of([it]), self._rows(it, "sem_xyzt", "sem_sample"))
            probs.append(torch.softmax(torch.from_numpy(logits), -1).numpy())
            ys.append(self._rows(it, "sem_class", "sem_sample"))
        P, y = np.concatenate(probs), np.concatenate(ys)
        pred = P.argmax(1)
        out = {}
        for c, name in enumerate(SEMANTIC_CLASSES):
            if c:
                out[f"AP/{name}"] = M.average_precision(P[:, c], y == c)
            out[f"IoU/{name}"] = M.iou(pred == c, y == c)
        out["mAP"] = _nanmean([out[f"AP/{n}"] for n in SEMANTIC_CLASSES[1:]])
        out["mIoU"] = _nanmean([out[f"IoU/{n}"] for n in SEMANTIC_CLASSES])
        return out, self.bev_slice(head, bev_of, items[0])

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
        return {"pred": pred, "truth": truth, "classes": list(SEMANTIC_CLASSES)}


class MapTask(Task):
    """Map segmentation: drivable area, pedestrian crossings, lane dividers and road boundaries in BEV."""

    name = "map"

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
        out["mIoU"] = _nanmean([out[f"IoU/{n}"] for n in MAP_CLASSES])
        return out, {"prob": P[0], "truth": Y[0], "classes": list(MAP_CLASSES)}


class TrajectoryTask(Task):
    """Ego trajectory: waypoints every 0.5 s to 3 s in the t0 frame; L2 at 1/2/3 s and collisions with objects."""

    name = "trajectory"

    def head(self, feat_dim):
        past_steps = self.labels.log(next(iter(self.labels.manifest["logs"])))["ego_past"].shape[1]
        return TrajectoryHead(feat_dim, self.label_cfg.waypoint_times_s, past_steps, self.cfg.head)

    def _past(self, items, device) -> Tensor:
        return _t(np.stack([self._arr(it, "ego_past") for it in items]), device)

    def loss(self, head, bev, items, rng):
        y = _t(np.stack([self._arr(it, "waypoints") for it in items]), bev.device)
        return F.smooth_l1_loss(head(bev, self._past(items, bev.device)).float(), y)

    @torch.no_grad()
    def evaluate(self, head, bev_of, items):
        times = np.asarray(self.label_cfg.waypoint_times_s)
        preds, trues, cvs, hits, true_hits = [], [], [], [], []
        for it in items:
            bev, past = bev_of([it]), self._past([it], self.device_of(head))
            pred = head(bev, past)[0].float().cpu().numpy().astype(np.float64)
            true = self._arr(it, "waypoints").astype(np.float64)
            preds.append(pred)
            trues.append(true)
            cvs.append(constant_velocity(past, head.times)[0].cpu().numpy().astype(np.float64))
            hits.append(self.collides(it, pred))
            true_hits.append(self.collides(it, true))
        P, T, CV = np.stack(preds), np.stack(trues), np.stack(cvs)
        at = tuple(t for t in (1.0, 2.0, 3.0) if t <= times.max() + 1e-9) or (float(times.max()),)
        per_sample = [M.l2_at(p, t, times, at) for p, t in zip(P, T)]
        out = {k: float(np.mean([d[k] for d in per_sample])) for k in per_sample[0]}
        out["L2_avg"] = float(np.mean(list(out.values())))  # over 1, 2 and 3 s (those within the horizon)
        # the reference every head starts from: constant-velocity extrapolation of the odometry
        out["L2_avg_constant_velocity"] = float(np.mean([np.mean(list(M.l2_at(c, t, times, at).values())) for c, t in zip(CV, T)]))
        out["collision_rate"] = float(np.mean(hits))
        out["collision_rate_true_path"] = float(np.mean(true_hits))
        return out, {"pred": P[0], "true": T[0], "constant_velocity": CV[0], "times": times}

    @staticmethod
    def device_of(module: nn.Module) -> torch.device:
        return next(module.parameters()).device

    def collides(self, item: Item, xy: np.ndarray) -> bool:
        arrays = self.labels.log(item[0])
        length, width, overhang = (float(v) for v in arrays["ego_dims"])
        b = arrays["boxes"][arrays["boxes"][:, 0] == item[1]]
        path = np.vstack([[0.0, 0.0], xy])
        step = np.diff(path, axis=0)
        yaw = np.arctan2(step[:, 1], step[:, 0])
        per_step = [(b[b[:, 1] == k, 2:4], b[b[:, 1] == k, 4], b[b[:, 1] == k, 5:7]) for k in range(len(xy))]
        return M.collides(xy, yaw, (length, width), overhang, per_step)


TASK_CLASSES: dict[str, type[Task]] = {c.name: c for c in (ForecastTask, OccupancyTask, SemanticOccupancyTask, MapTask, TrajectoryTask)}


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
                    chunk = missing[i:i + 8]
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
    return 0.5 * (1.0 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)))


def train_run(task: Task, encoder_dir: Path, items: list[Item], cfg: FinetuneConfig, seed: int, device: torch.device,
              features: Features | None = None) -> tuple[nn.Module, nn.Module, list[float]]:
    """One fine-tuning run: returns (head, encoder, per-step losses). With a frozen encoder, ``features`` (shared
    across runs of the same initialisation) caches the BEV features."""
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
    losses = []
    for _ in range(cfg.steps):
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
    head.eval()
    encoder.eval()
    return head, encoder, losses


def _feat_dim(encoder: nn.Module) -> int:
    return encoder.lateral[0].out_channels


def run_dir(root: Path, budget: str, seed: int) -> Path:
    return Path(root) / budget / f"seed_{seed}"


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


def finetune(task_name: str, init: str, labels_dir: Path, occupancy_dir: Path, init_dir: Path, out_dir: Path,
             scene: SceneConfig, splits: SplitsConfig, cfg: FinetuneConfig, progress: bool = True) -> dict:
    """Every (budget, seed) run of one task and initialisation; saves heads under ``out_dir`` and returns
    metrics: the final training loss and the validation metrics of each run, and their mean over seeds."""
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    val_items = items_of(labels, splits.val)
    shared = Features(load_encoder(init_dir, device), labels, device, True) if cfg.encoder == "frozen" else None
    result: dict = {"task": task_name, "init": init, "encoder": cfg.encoder, "runs": {}}
    bar = tqdm(total=len(cfg.budgets) * len(cfg.seeds), desc=f"finetune {task_name}/{init}", unit="run", disable=not progress)
    for budget, fraction in cfg.budgets.items():
        logs = budget_logs(splits.train, fraction)
        items = items_of(labels, logs)
        for seed in cfg.seeds:
            start = time.perf_counter()
            head, encoder, losses = train_run(task, init_dir, items, cfg, seed, device, shared)
            val, _ = task.evaluate(head, shared if shared is not None else Features(encoder, labels, device, False), val_items)
            info = {"task": task_name, "init": init, "budget": budget, "fraction": fraction, "seed": seed, "labelled_logs": logs,
                    "samples": len(items), "feat_dim": _feat_dim(encoder), "loss_first": losses[0],
                    "loss_final": float(np.mean(losses[-10:])), "val": val, "config": asdict(cfg)}
            save_run(run_dir(out_dir, budget, seed), head, None if cfg.encoder == "frozen" else encoder, info)
            result["runs"][f"{budget}/seed_{seed}"] = {"loss_first": round(losses[0], 5), "loss_final": round(info["loss_final"], 5),
                                                       "val": _round(val)}
            # timings go to the log only: metrics stay byte-identical across reruns
            log.info("%s/%s %s seed %d: %d steps in %.1f s", task_name, init, budget, seed, cfg.steps, time.perf_counter() - start)
            bar.update()
    bar.close()
    return result


def save_qualitative(path: Path, qualitative: dict[str, dict]) -> Path:
    """The evaluate stage's predictions per init (``{init: {name: array}}``) as one npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"{init}/{k}": np.asarray(v) for init, q in qualitative.items() for k, v in q.items()})
    return path


def load_qualitative(path: Path) -> dict[str, dict]:
    """Inverse of :func:`save_qualitative` (plain arrays only: no pickles)."""
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            init, name = key.split("/", 1)
            out.setdefault(init, {})[name] = z[key]
    return out


def evaluate_runs(task_name: str, inits: dict[str, Path], runs_root: Path, labels_dir: Path, occupancy_dir: Path,
                  scene: SceneConfig, splits: SplitsConfig, cfg: FinetuneConfig, split: str = "test",
                  progress: bool = True) -> tuple[dict, dict]:
    """Score every saved run of a task on ``split``: per init / budget / seed, and mean and std over seeds.
    Returns (metrics, qualitative arrays per init of the first budget's first seed on the split's first sample)."""
    device = resolve_device(cfg.device)
    labels = TaskLabels(labels_dir)
    task = make_task(task_name, labels, occupancy_dir, scene, cfg)
    items = items_of(labels, getattr(splits, split))
    metrics: dict = {"task": task_name, "split": split, "samples": len(items), "results": {}}
    qualitative: dict = {}
    bar = tqdm(total=len(inits) * len(cfg.budgets) * len(cfg.seeds), desc=f"evaluate {task_name}", unit="run", disable=not progress)
    for init, init_dir in inits.items():
        shared = Features(load_encoder(init_dir, device), labels, device, True)
        for budget in cfg.budgets:
            per_seed = {}
            for seed in cfg.seeds:
                head, encoder = load_run(task, run_dir(Path(runs_root) / init, budget, seed), init_dir, device)
                feats = shared if encoder is None else Features(encoder, labels, device, True)
                per_seed[seed], qual = task.evaluate(head, feats, items)
                if init not in qualitative and qual:
                    qualitative[init] = qual
                bar.update()
            keys = per_seed[cfg.seeds[0]].keys()
            metrics["results"].setdefault(init, {})[budget] = {
                "mean": _round({k: _nanmean([per_seed[s][k] for s in cfg.seeds]) for k in keys}),
                "std": _round({k: _nanstd([per_seed[s][k] for s in cfg.seeds]) for k in keys}),
                "seeds": {str(s): _round(v) for s, v in per_seed.items()}}
    bar.close()
    return metrics, qualitative


def _round(d: dict, digits: int = 5) -> dict:
    return {k: (round(float(v), digits) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None)
            for k, v in d.items()}
