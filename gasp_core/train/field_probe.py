"""How much of the teacher's semantics survives distillation: the surface-class probe on a pre-trained model's DINO
field.

For samples of a log (every ``stride``-th sweep with a full past and horizon), the model encodes the past sweeps and
is queried at the lifted lidar points of the camera frames within the horizon, in the t0 frame at their firing times:
exactly the points and times pre-training distils. The same points give the teacher's targets, so the probe sees the
field and the targets on identical points; it is fitted on the training logs and scored on the test logs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.data.store import LogStore
from gasp_core.targets import schema
from gasp_core.targets.build import log_rng
from gasp_core.teacher.probe import ProbeConfig, ProbeSet, linear_probe


def sample_points(
    store: LogStore, dino_dir: Path, log_id: str, scene: SceneConfig, stride: int, points: int, seed: int
):
    """Per sample of the log: (past sweeps in the t0 frame, (P, 4) queries, (P, D) targets, (P,) surface classes),
    at most ``points`` per sample, drawn with a seeded generator among lifted points inside ``scene.extent_m``."""
    log = store.log(log_id)
    frames = pl.read_parquet(Path(dino_dir) / log_id / schema.DINO_FRAMES_FILE)
    reader = ipc.open_file(pa.memory_map(str(Path(dino_dir) / log_id / schema.DINO_POINTS_FILE)))
    if "surface" not in reader.schema.names:
        raise ValueError(
            f"{dino_dir / log_id / schema.DINO_POINTS_FILE}: no surface labels; the field probe needs a "
            "store with surface labels (the embedded world's sidecar)"
        )
    rng = log_rng(seed, log_id)
    horizon_ns = int(scene.horizon_s * 1e9)
    for sample in select_samples(log.sweep_timestamps_ns, scene, stride):
        t0 = sample.t0_ns
        t0_T_city = np.linalg.inv(log.city_T_ego(t0)[0])
        rows = frames.filter(
            (pl.col("camera_ns") >= t0) & (pl.col("camera_ns") <= t0 + horizon_ns) & (pl.col("num_points") > 0)
        )
        xyzt, feats, surf = [], [], []
        for batch, sweep_ns in zip(rows["batch"], rows["sweep_ns"]):
            b = reader.get_batch(batch)
            T = t0_T_city @ log.city_T_ego(sweep_ns)[0]
            p = np.column_stack([b.column(c).to_numpy() for c in ("x_m", "y_m", "z_m")]).astype(np.float64)
            t = (b.column("t_ns").to_numpy() - t0) / 1e9
            xyzt.append(np.column_stack([p @ T[:3, :3].T + T[:3, 3], t]))
            feats.append(b.column("feature").flatten().to_numpy().reshape(len(t), -1))
            surf.append(b.column("surface").to_numpy())
        if not xyzt:
            continue
        xyzt, feats, surf = np.concatenate(xyzt), np.concatenate(feats), np.concatenate(surf)
        inside = np.all((xyzt[:, :3] >= scene.box_min) & (xyzt[:, :3] <= scene.box_max), axis=1)
        inside &= (xyzt[:, 3] >= 0) & (xyzt[:, 3] <= scene.horizon_s)
        pool = np.flatnonzero(inside)
        if not len(pool):
            continue
        pick = np.sort(rng.choice(pool, min(points, len(pool)), replace=False))
        past = [log.sweep_points_in(ts, t0, intensity=True) for ts in sample.past_ns]
        yield past, xyzt[pick], feats[pick].astype(np.float32), surf[pick].astype(np.int64)


def field_sets(
    model, store: LogStore, dino_dir: Path, log_ids: list[str], scene: SceneConfig, stride: int, points: int, seed: int
) -> tuple[ProbeSet, ProbeSet]:
    """(the model's predicted DINO field, the teacher's targets) at the same points of ``log_ids``."""
    field, targets = [], []
    for log_id in log_ids:
        for past, q, feat, surf in sample_points(store, dino_dir, log_id, scene, stride, points, seed):
            field.append(ProbeSet(model.query(past, q)["dino"].astype(np.float32), surf))
            targets.append(ProbeSet(feat, surf))
    return ProbeSet.concat(field), ProbeSet.concat(targets)


def probe_field(
    model,
    *,
    store_dir: Path,
    dino_dir: Path,
    train_logs: list[str],
    test_logs: list[str],
    scene: SceneConfig,
    cfg: ProbeConfig,
    stride: int = 5,
    points: int = 400,
) -> dict:
    """The probe of the model's DINO field and of the teacher's targets on the same points: fitted on
    ``train_logs``, scored on ``test_logs``."""
    if model.dino is None:
        raise ValueError("the model has no DINO decoder (a variant without the DINO objective): nothing to probe")
    store = LogStore(store_dir)
    classes = store.log(test_logs[0]).meta.surface_classes
    if classes is None:
        raise ValueError(f"{store_dir}: the logs carry no surface labels; the field probe needs them")
    train = field_sets(model, store, dino_dir, train_logs, scene, stride, points, cfg.seed)
    test = field_sets(model, store, dino_dir, test_logs, scene, stride, points, cfg.seed)
    return {
        "field": linear_probe(train[0], test[0], classes, cfg),
        "targets": linear_probe(train[1], test[1], classes, cfg),
    }
