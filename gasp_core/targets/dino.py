"""The ``dino_targets`` stage: DINOv2 features of every camera frame, reduced by PCA and lifted onto lidar points.

``source="oracle"`` swaps the teacher for the simulator's surface class of each point (``dino_oracle.py``): a control
that real data cannot have, through the same PCA, lift, schema and probe."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import torch
from PIL import Image

from gasp_core.config import MISSING_VALUE, ConfigError, from_dict
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.io import atomic_dir, write_json_atomic
from gasp_core.parallel import ComputeConfig, map_jobs
from gasp_core.progress import progress as progress_bar
from gasp_core.targets import schema
from gasp_core.targets.build import log_rng
from gasp_core.targets.dino_lift import LiftConfig, lift_frame
from gasp_core.targets.dino_oracle import OracleTeacher, fit_oracle_pca, image_hw
from gasp_core.teacher.dinov2 import DinoTeacher, TeacherConfig, hub_offline_guard, resolve_device, sample_features
from gasp_core.teacher.pca import FeaturePCA
from gasp_core.teacher.probe import ProbeConfig, ProbeSet, linear_probe

log = logging.getLogger(__name__)


@dataclass
class DinoTargetsConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    pca_dim: int = 64
    """Dimension of the stored targets (PCA of the teacher's features)."""
    pca_fit_frames: int = 48
    """Frames, drawn across the training logs (``splits.train``), whose patch features fit the PCA."""
    frame_stride: int = 3
    """Use every n-th frame of each camera."""
    seed: int = 0
    """Seed of the PCA frame draw."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """The linear probe of surface classes (run when the store has surface labels): fitted on the training logs'
    points, scored on the test logs', from the colour at the pixel and from the teacher's targets."""
    sources: list[str] = field(default_factory=lambda: ["teacher"])
    """The targets dvc.yaml builds, one folder each (``data/targets/dino/<source>``): ``teacher`` (the ViT above) and
    ``oracle`` (a fixed embedding of the simulator's surface class at each point: a control that real data cannot
    have, for the teacher ladder; pre-training variant ``gasp_oracle`` distils it)."""


def dino_targets_config_from_dict(data, strict: bool = False) -> DinoTargetsConfig:
    return from_dict(DinoTargetsConfig, data, "dino_targets", strict)


@dataclass
class Frame:
    log_id: str
    camera: str
    camera_ns: int
    image_path: Path


def list_frames(store: LogStore, stride: int) -> list[Frame]:
    frames = []
    for log_id in store.log_ids:
        lg = store.log(log_id)
        cams = lg.camera_frames.sort(["camera", "timestamp_ns"])
        for cam in cams["camera"].unique(maintain_order=True):
            rows = cams.filter(cams["camera"] == cam)[::stride]
            frames += [
                Frame(log_id, cam, int(t), lg.image_path(p)) for t, p in zip(rows["timestamp_ns"], rows["image_path"])
            ]
    return frames


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float in [0, 1]; a missing or corrupt image is an error naming the file."""
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"camera image {path}: unreadable ({exc})") from exc
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _batches(frames: list[Frame], size: int):
    """Runs of frames of one camera of one log (same image size), at most ``size`` long."""
    run: list[Frame] = []
    for f in frames:
        if run and (len(run) == size or (f.log_id, f.camera) != (run[0].log_id, run[0].camera)):
            yield run
            run = []
        run.append(f)
    if run:
        yield run


def fit_pca(
    teacher: DinoTeacher, frames: list[Frame], cfg: DinoTargetsConfig, device: torch.device, max_tokens: int = 200_000
) -> FeaturePCA:
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(len(frames), size=min(cfg.pca_fit_frames, len(frames)), replace=False))
    chosen = [frames[i] for i in pick]
    tokens = []
    for batch in progress_bar(list(_batches(chosen, cfg.teacher.batch_size)), desc="dino pca fit", unit="batch"):
        fmap = teacher(torch.stack([load_image(f.image_path) for f in batch]).to(device))
        tokens.append(fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]).cpu())
    feats = torch.cat(tokens)
    if len(feats) > max_tokens:
        feats = feats[torch.from_numpy(rng.choice(len(feats), max_tokens, replace=False))]
    return FeaturePCA.fit(feats, cfg.pca_dim)


def fit_log_frames(frames: list[Frame], fit_logs: list[str], store: LogStore) -> list[Frame]:
    """The frames of ``fit_logs`` (the training split): val and test images never shape the targets' PCA."""
    if isinstance(fit_logs, str) or not fit_logs:
        if fit_logs == MISSING_VALUE:
            raise ConfigError(
                "splits.train is not set ('???' in the composed config): the DINO PCA is fitted on the "
                "training logs; give them in configs/ or with -S splits.train=..."
            )
        raise ValueError(f"fit_logs: expected a non-empty list of training log ids (splits.train), got {fit_logs!r}")
    missing = [lid for lid in fit_logs if lid not in store.log_ids]
    if missing:
        raise ValueError(
            f"{store.root}: the DINO PCA's fit logs (splits.train) {missing} are not in the log store "
            f"(it holds {store.log_ids})"
        )
    fit = set(fit_logs)
    chosen = [f for f in frames if f.log_id in fit]
    if not chosen:
        raise ValueError(f"{store.root}: the DINO PCA's fit logs (splits.train) {sorted(fit)} have no camera frames")
    return chosen


def surface_classes(store: LogStore) -> list[str] | None:
    """The surface class names when every log of the store carries surface labels, else None."""
    names = [store.log(lid).meta.surface_classes for lid in store.log_ids]
    if not names or any(n is None for n in names):
        return None
    if any(n != names[0] for n in names):
        raise ValueError(f"{store.root}: logs disagree on their surface classes; re-ingest them together")
    return list(names[0])


def pixel_rgb(image: torch.Tensor, uv: np.ndarray) -> np.ndarray:
    """(P, 3) uint8 colour of a (3, H, W) [0, 1] image at the pixels holding ``uv`` (P, 2)."""
    h, w = image.shape[-2:]
    u = np.clip(np.floor(uv[:, 0]).astype(np.int64), 0, w - 1)
    v = np.clip(np.floor(uv[:, 1]).astype(np.int64), 0, h - 1)
    return np.round(image[:, v, u].T.numpy() * 255.0).astype(np.uint8)


def probe_targets(
    sets: dict[str, dict[str, list[ProbeSet]]],
    train_logs: list[str],
    test_logs: list[str],
    classes: list[str],
    cfg: ProbeConfig,
) -> dict:
    """The probe of each feature source (``rgb``, ``teacher``; ``sets[source][log_id]``) fitted on the points of
    ``train_logs``, scored on those of ``test_logs``."""
    out = {}
    for source in ("rgb", "teacher"):
        train = ProbeSet.concat([p for lid in train_logs for p in sets[source].get(lid, [])])
        test = ProbeSet.concat([p for lid in test_logs for p in sets[source].get(lid, [])])
        out[source] = linear_probe(train, test, classes, cfg)
        log.info(
            "probe of %s features: accuracy %.3f, mIoU %.3f (%d test points)",
            source,
            out[source]["accuracy"],
            out[source]["mIoU"],
            out[source]["test_points"],
        )
    return out


_TEACHERS: dict[tuple[str, str], DinoTeacher] = {}


def _teacher(cfg: TeacherConfig, device: torch.device) -> DinoTeacher:
    """The teacher of ``cfg`` on ``device``, built once per process (the stage's own process and each worker)."""
    key = (json.dumps(asdict(cfg), sort_keys=True, default=str), str(device))
    if key not in _TEACHERS:
        _TEACHERS[key] = DinoTeacher(cfg).to(device)
    return _TEACHERS[key]


@dataclass
class _LogJob:
    """One log's targets: what a worker needs, picklable (paths as strings; the PCA is read from ``out_dir``)."""

    store_dir: str
    out_dir: str
    log_id: str
    frames: list[Frame]
    cfg: DinoTargetsConfig
    oracle_classes: list[str] | None
    """The oracle's classes (``source="oracle"``), None for the teacher."""
    probe_classes: list[str] | None
    """Surface classes when the stored points carry them (the probe's labels), else None."""
    probe_log: bool
    """Whether this log's points feed the probe (a training or test log)."""


def _targets_one(job: _LogJob) -> dict:
    """Features of one log's frames (teacher or oracle), PCA-reduced, lifted onto its lidar points, written atomically
    under ``out_dir/log_id``; returns the counts, the teacher's forward seconds and the probe's points."""
    cfg, log_id, classes = job.cfg, job.log_id, job.probe_classes
    out = Path(job.out_dir)
    pca = FeaturePCA.load(out / schema.PCA_FILE)
    if job.oracle_classes is None:
        device = resolve_device(cfg.teacher.device)
        teacher, oracle = _teacher(cfg.teacher, device), None
    else:
        device, oracle = torch.device("cpu"), OracleTeacher.for_classes(job.oracle_classes, cfg.seed)
        teacher, oracle_table = oracle, oracle.pca_table(pca)
    lg: StoredLog = LogStore(Path(job.store_dir)).log(log_id)
    points_schema = schema.dino_points_schema(cfg.pca_dim, labelled=classes is not None)
    rows: dict[str, list] = {name: [] for name in schema.DINO_FRAMES.names}
    rng = log_rng(cfg.seed, log_id)
    probe_rng = log_rng(cfg.probe.seed, log_id)
    probe: dict[str, list[ProbeSet]] = {"rgb": [], "teacher": []}
    counts = {"frames": 0, "frames_skipped_no_sweep": 0, "points": 0}
    teacher_s = 0.0
    with atomic_dir(out / log_id) as tmp:
        with ipc.new_file(str(tmp / schema.DINO_POINTS_FILE), points_schema) as writer:
            for batch in _batches(job.frames, cfg.teacher.batch_size):
                if oracle is None or classes is not None:  # the oracle needs pixels only for the probe's colour
                    images = torch.stack([load_image(f.image_path) for f in batch])
                    h, w = images.shape[-2:]
                else:
                    h, w = image_hw(batch[0].image_path)
                if oracle is None:
                    t0 = time.perf_counter()
                    fmap = teacher(images.to(device))
                    teacher_s += time.perf_counter() - t0
                for k, f in enumerate(batch):
                    lifted = lift_frame(lg, f.camera, f.camera_ns, w, h, cfg.lift, rng)
                    if lifted is None:
                        counts["frames_skipped_no_sweep"] += 1
                        log.warning(
                            "log %s: %s frame %d has no lidar sweep within %.0f ms; skipped",
                            log_id,
                            f.camera,
                            f.camera_ns,
                            cfg.lift.max_sync_ms,
                        )
                        continue
                    if oracle is None:
                        feats = (
                            pca.transform(sample_features(fmap[k], lifted.uv, (h, w))).cpu().numpy().astype(np.float16)
                        )
                    else:
                        feats = oracle_table[oracle.class_index(lifted.surface)]
                    flat = pa.array(feats.reshape(-1), pa.float16())
                    columns = {
                        "x_m": lifted.points_ego[:, 0].astype(np.float32),
                        "y_m": lifted.points_ego[:, 1].astype(np.float32),
                        "z_m": lifted.points_ego[:, 2].astype(np.float32),
                        "t_ns": lifted.t_ns,
                        "feature": pa.FixedSizeListArray.from_arrays(flat, cfg.pca_dim),
                    }
                    if classes is not None:
                        rgb = pixel_rgb(images[k], lifted.uv)
                        columns["surface"] = lifted.surface.astype(np.uint8)
                        columns["rgb"] = pa.FixedSizeListArray.from_arrays(pa.array(rgb.reshape(-1), pa.uint8()), 3)
                        if job.probe_log and len(feats):
                            n = min(cfg.probe.points_per_frame, len(feats))
                            pick = np.sort(probe_rng.choice(len(feats), n, replace=False))
                            y = lifted.surface[pick].astype(np.int64)
                            probe["rgb"].append(ProbeSet(rgb[pick].astype(np.float32) / 255.0, y))
                            probe["teacher"].append(ProbeSet(feats[pick].astype(np.float32), y))
                    writer.write_batch(pa.record_batch(columns, schema=points_schema))
                    for key, value in (
                        ("batch", len(rows["batch"])),
                        ("camera", f.camera),
                        ("camera_ns", f.camera_ns),
                        ("sweep_ns", lifted.sweep_ns),
                        ("num_points", len(lifted.t_ns)),
                    ):
                        rows[key].append(value)
                    counts["frames"] += 1
                    counts["points"] += len(lifted.t_ns)
        pq.write_table(pa.table(rows, schema=schema.DINO_FRAMES), tmp / schema.DINO_FRAMES_FILE)
        (tmp / schema.META_FILE).write_text(
            json.dumps({"log_id": log_id, "frames": len(rows["batch"]), "teacher": teacher.weights_id})
        )
    return {"log_id": log_id, "counts": counts, "teacher_s": teacher_s, "probe": probe}


def build_dino_targets(
    store_dir: Path,
    *,
    out: Path,
    cfg: DinoTargetsConfig,
    fit_logs: list[str],
    progress: bool = True,
    test_logs: list[str] | None = None,
    source: str = "teacher",
    compute: ComputeConfig | None = None,
) -> dict:
    """Teacher features for every frame of every log, lifted onto lidar points; returns the stage metrics.
    The PCA is fitted on frames of ``fit_logs`` (the training split) only; every log is transformed. When the store
    has surface labels and ``test_logs`` are given, a linear probe fitted on the training logs' points and scored on
    the test logs' says how well the targets (and, as the floor, the pixel colours) predict each point's class.

    ``source``: ``"teacher"`` (the ViT of ``cfg.teacher``) or ``"oracle"``: no network, each point's feature is a
    fixed embedding of its simulated surface class (``dino_oracle.py``), a control that real data cannot have; it
    needs a store with surface labels and stores the same points as the teacher would.

    The PCA is fitted here; each log's features, lift and file are one job on ``compute`` (default: this process),
    which wants a GPU for the teacher's forward pass. The outputs do not depend on the backend."""
    start = time.perf_counter()
    if source not in ("teacher", "oracle"):
        raise ValueError(f"DINO targets source {source!r}: expected 'teacher' or 'oracle'")
    if source == "teacher" and cfg.teacher.weights != "hub":
        hub_offline_guard()
    store = LogStore(store_dir)
    oracle = None
    if source == "oracle":
        oracle_classes = surface_classes(store)
        if oracle_classes is None:
            raise ValueError(
                f"{store.root}: oracle DINO targets need the simulator's per-return surface labels, and this log "
                "store has none (real data cannot have an oracle)"
            )
        oracle = OracleTeacher.for_classes(oracle_classes, cfg.seed)
    frames = list_frames(store, cfg.frame_stride)
    if not frames:
        raise ValueError(f"no camera frames in the log store {store_dir}: DINO targets need images")
    fit_frames = fit_log_frames(frames, fit_logs, store)
    out = Path(out)
    if out.exists():  # the PCA is fitted across logs: every log is redone together
        if any(out.iterdir()) and not (out / schema.MANIFEST_FILE).is_file() and not (out / schema.PCA_FILE).is_file():
            raise FileExistsError(
                f"{out} exists and does not look like DINO targets (no {schema.MANIFEST_FILE}); refusing to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if oracle is None:
        device = resolve_device(cfg.teacher.device)
        teacher = _teacher(cfg.teacher, device)
        pca = fit_pca(teacher, fit_frames, cfg, device)
    else:
        device, teacher = torch.device("cpu"), oracle
        pca = fit_oracle_pca(oracle, store, fit_frames, cfg)
    pca.save(out / schema.PCA_FILE)
    write_json_atomic(
        out / schema.TEACHER_FILE,
        {
            "model": teacher.model_name,
            "weights": teacher.weights_id,
            "random_weights": teacher.is_random,
            "feature_dim": teacher.dim,
            "pca_dim": cfg.pca_dim,
        },
    )
    classes = surface_classes(store) if test_logs else None
    probed = set(fit_logs) | set(test_logs or [])
    jobs = [
        _LogJob(
            str(store_dir),
            str(out),
            log_id,
            [f for f in frames if f.log_id == log_id],
            cfg,
            None if oracle is None else oracle.classes,
            classes,
            classes is not None and log_id in probed,
        )
        for log_id in store.log_ids
    ]
    results = map_jobs(
        _targets_one,
        jobs,
        compute or ComputeConfig(backend="sequential"),
        "dino targets",
        progress,
        postfix=lambda rs: {"frames": sum(r["counts"]["frames"] for r in rs)},
        names=store.log_ids,
        visible=lambda r: [out / r["log_id"] / schema.META_FILE],
        gpu=oracle is None,
    )
    counts = {key: sum(r["counts"][key] for r in results) for key in ("frames", "frames_skipped_no_sweep", "points")}
    teacher_s = sum(r["teacher_s"] for r in results)
    probe_sets: dict[str, dict[str, list[ProbeSet]]] = {"rgb": {}, "teacher": {}}
    for r in results:
        for key, parts in r["probe"].items():
            if parts:
                probe_sets[key][r["log_id"]] = parts
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    metrics = {
        **counts,
        "logs": len(store.log_ids),
        "points_per_frame": round(counts["points"] / max(counts["frames"], 1), 1),
        "bytes_per_frame": round(size / max(counts["frames"], 1)),
        "teacher_model": teacher.model_name,
        "teacher_weights": teacher.weights_id,
        "teacher_random_weights": teacher.is_random,
        "pca_dim": cfg.pca_dim,
        "pca_explained_variance": round(float(pca.explained_variance_ratio.sum()), 4),
    }
    if classes is not None:
        metrics["probe"] = probe_targets(probe_sets, list(fit_logs), list(test_logs), classes, cfg.probe)
    forward = f"teacher forward alone {len(frames) / teacher_s:.2f} images/s" if teacher_s > 0 else "no network"
    log.info(
        "%d images in %.1f s: %.2f images/s (%s), %.0f lifted points/s on %s",
        len(frames),
        seconds,
        len(frames) / seconds,
        forward,
        counts["points"] / seconds,
        device,
    )
    write_json_atomic(
        out / schema.MANIFEST_FILE,
        {"logs": store.log_ids, "pca_fit_logs": list(fit_logs), "config": asdict(cfg), "metrics": metrics},
    )
    return metrics
