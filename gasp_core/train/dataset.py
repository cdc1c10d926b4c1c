"""Pre-training samples: past sweeps voxelized in the t0 frame and the three query sets with their targets.

Every draw is a pure function of (sample index, draw seed): the training loop derives the seed from
(run seed, step, rank), so a resumed run sees exactly the batches the uninterrupted one would. With rotation
augmentation the yaw is drawn first and queries are picked among those that stay inside ``scene.extent_m``
once rotated: no query outside the BEV grid is supervised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import torch

from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.geometry import yaw_rotation
from gasp_core.models.config import Variant, VoxelizerConfig
from gasp_core.models.voxelizer import voxelize
from gasp_core.targets import schema
from gasp_core.targets.occupancy import QuerySource


@dataclass
class QueryCounts:
    occupancy: int = 2048
    """Occupancy queries per sample and step (drawn from the sample's stored queries)."""
    ego: int = 512
    """Ego-path queries per sample and step."""
    dino: int = 512
    """DINO points per sample and step (from camera frames within the horizon)."""


class PretrainDataset(torch.utils.data.Dataset):
    """Items are ``(sample index, draw seed)`` pairs; returns a dict of tensors, ``rotation_rad`` among them (the
    yaw applied to sweeps and queries, 0 without rotation augmentation).

    DINO targets are the stored PCA features as the teacher gives them; ``dino_standardize`` standardises each
    dimension by ``dino_mean`` / ``dino_std`` (otherwise 0 / 1, so a model given them predicts PCA units)."""

    def __init__(self, store_dir: Path, occupancy_dir: Path, dino_dir: Path | None, scene: SceneConfig,
                 voxelizer: VoxelizerConfig, counts: QueryCounts, variant: Variant, logs: list[str] | None = None,
                 dino_standardize: bool = False) -> None:
        self.store = LogStore(store_dir)
        self.log_ids = list(logs) if logs is not None else self.store.log_ids
        unknown = [lid for lid in self.log_ids if lid not in self.store.log_ids]
        if unknown:
            raise ValueError(f"{store_dir}: no such logs in the store: {unknown}")
        self.occupancy_dir, self.dino_dir = Path(occupancy_dir), (Path(dino_dir) if dino_dir else None)
        self.scene, self.vox, self.counts, self.variant = scene, voxelizer, counts, variant
        self.dino_standardize = dino_standardize
        self._logs: dict = {}
        self._files: dict = {}
        self.samples: list[tuple[str, int, int, list[int]]] = []
        for log_id in self.log_ids:
            path = self.occupancy_dir / log_id / schema.SAMPLES_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: occupancy labels do not cover log {log_id}")
            for row in pl.read_parquet(path).iter_rows(named=True):
                self.samples.append((log_id, row["batch"], row["t0_ns"], row["past_ns"]))
        if not self.samples:
            raise ValueError(f"no pre-training samples in {self.occupancy_dir}")
        self.use_dino = variant.dino and self.dino_dir is not None
        self.dino_dim = 0
        if variant.dino:
            if self.dino_dir is None:
                raise ValueError("the variant trains the DINO head but no DINO targets were given")
            self.dino_frames = {lid: pl.read_parquet(self.dino_dir / lid / schema.DINO_FRAMES_FILE) for lid in self.log_ids}
            first = self.log_ids[0]
            with ipc.open_file(self.dino_dir / first / schema.DINO_POINTS_FILE) as f:
                self.dino_dim = f.schema.field("feature").type.list_size
            if dino_standardize:
                self.dino_mean, self.dino_std = self._feature_stats()
            else:
                self.dino_mean, self.dino_std = np.zeros(self.dino_dim, np.float32), np.ones(self.dino_dim, np.float32)

    def __getstate__(self) -> dict:
        # open files and logs stay in the process that opened them (spawned loader workers reopen their own)
        return {**self.__dict__, "_logs": {}, "_files": {}}

    def __len__(self) -> int:
        return len(self.samples)

    def _log(self, log_id: str):
        if log_id not in self._logs:
            self._logs[log_id] = self.store.log(log_id)
        return self._logs[log_id]

    def _batch(self, log_id: str, name: str, batch: int):
        key = (log_id, name)
        if key not in self._files:
            root = self.dino_dir if name == schema.DINO_POINTS_FILE else self.occupancy_dir
            self._files[key] = ipc.open_file(pa.memory_map(str(root / log_id / name)))
        return self._files[key].get_batch(batch)

    def _feature_stats(self, frames: int = 64) -> tuple[np.ndarray, np.ndarray]:
        feats = []
        for lid in self.log_ids:
            for b in range(min(frames // len(self.log_ids) + 1, self.dino_frames[lid].height)):
                feats.append(self._features(self._batch(lid, schema.DINO_POINTS_FILE, b)))
        f = np.concatenate(feats).astype(np.float32)
        return f.mean(0), f.std(0) + 1e-6

    def _features(self, batch) -> np.ndarray:
        return batch.column("feature").flatten().to_numpy().reshape(-1, self.dino_dim)

    def _dino(self, log_id: str, t0_ns: int, t0_T_city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every lifted point of the camera frames within the horizon: (x, y, z, t) in the t0 frame, PCA feature."""
        log = self._log(log_id)
        frames = self.dino_frames[log_id]
        horizon_ns = int(self.scene.horizon_s * 1e9)
        rows = frames.filter((pl.col("camera_ns") >= t0_ns) & (pl.col("camera_ns") <= t0_ns + horizon_ns) & (pl.col("num_points") > 0))
        xyz, t, feat = [], [], []
        for batch, sweep_ns in zip(rows["batch"], rows["sweep_ns"]):
            b = self._batch(log_id, schema.DINO_POINTS_FILE, batch)
            T = t0_T_city @ log.city_T_ego(sweep_ns)[0]
            p = np.column_stack([b.column(c).to_numpy() for c in ("x_m", "y_m", "z_m")]).astype(np.float64)
            xyz.append(p @ T[:3, :3].T + T[:3, 3])
            t.append((b.column("t_ns").to_numpy() - t0_ns) / 1e9)
            feat.append(self._features(b))
        if not xyz:
            raise ValueError(f"log {log_id}: no DINO targets within the horizon of t0 = {t0_ns}")
        return np.column_stack([np.concatenate(xyz), np.concatenate(t)]), np.concatenate(feat)

    def _in_extent(self, points: np.ndarray) -> np.ndarray:
        """Whether each point's first 2 (x, y) or 3 (x, y, z) coordinates lie in scene.extent_m."""
        d = points.shape[1]
        return np.all((points >= self.scene.box_min[:d]) & (points <= self.scene.box_max[:d]), axis=1)

    @staticmethod
    def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int, what: str) -> np.ndarray:
        """``n`` indices drawn among the True entries of ``candidates`` (with replacement when too few)."""
        pool = np.flatnonzero(candidates)
        if not len(pool):
            raise ValueError(f"{what}: no candidate query inside scene.extent_m")
        return rng.choice(pool, n, replace=len(pool) < n)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        log_id, batch, t0_ns, past_ns = self.samples[index]
        rng = np.random.default_rng([seed, index])
        # the yaw comes first: queries are picked among those still inside the BEV grid once rotated
        rotation_rad = rng.uniform(-np.pi, np.pi) if self.variant.rotation_augmentation else 0.0
        R = yaw_rotation(rotation_rad)[:2, :2]
        where = f"log {log_id} sample {batch}"
        log = self._log(log_id)
        t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
        sweeps = [log.sweep_points_in(ts, t0_ns) for ts in past_ns]
        occ = self._batch(log_id, schema.OCCUPANCY_FILE, batch)
        occ_xyzt = np.column_stack([occ.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "z_m", "t_s")])
        occ_xyzt[:, :2] = occ_xyzt[:, :2] @ R.T
        occ_label = occ.column("occupied").to_numpy().astype(np.float32)
        keep = self._in_extent(occ_xyzt[:, :3])
        if not self.variant.missing_rays:
            keep &= occ.column("source").to_numpy() != QuerySource.MISSING
        pick = self._pick(rng, keep, self.counts.occupancy, f"{where}: occupancy")
        item_out = {"occupancy_q": occ_xyzt[pick], "occupancy_label": occ_label[pick]}
        if self.variant.ego:
            ego = self._batch(log_id, schema.EGO_PATH_FILE, batch)
            ego_xyt = np.column_stack([ego.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "t_s")])
            ego_xyt[:, :2] = ego_xyt[:, :2] @ R.T
            e = self._pick(rng, self._in_extent(ego_xyt[:, :2]), self.counts.ego, f"{where}: ego path")
            item_out["ego_q"] = ego_xyt[e]
            item_out["ego_label"] = ego.column("inside").to_numpy().astype(np.float32)[e]
        if self.use_dino:
            dino_xyzt, feat = self._dino(log_id, t0_ns, t0_T_city)
            dino_xyzt[:, :2] = dino_xyzt[:, :2] @ R.T
            t = dino_xyzt[:, 3]
            d = self._pick(rng, self._in_extent(dino_xyzt[:, :3]) & (t >= 0) & (t <= self.scene.horizon_s),
                           self.counts.dino, f"{where}: DINO")
            target = feat[d].astype(np.float32)
            if self.dino_standardize:
                target = (target - self.dino_mean) / self.dino_std
            item_out["dino_q"], item_out["dino_target"] = dino_xyzt[d], target
        if self.variant.rotation_augmentation:
            sweeps = [np.column_stack([s[:, :2] @ R.T, s[:, 2]]) for s in sweeps]
        item_out["voxels"] = voxelize(sweeps, self.scene, self.vox)
        item_out["rotation_rad"] = np.float32(rotation_rad)
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in item_out.items()}
