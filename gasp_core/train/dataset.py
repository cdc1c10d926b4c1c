"""Pre-training samples: past sweeps voxelized in the t0 frame and the three query sets with their targets.

Every draw is a pure function of (sample index, draw seed): the training loop derives the seed from
(run seed, step, rank), so a resumed run sees exactly the batches the uninterrupted one would. With rotation
augmentation the yaw is drawn first and queries are picked among those that stay inside ``scene.extent_m``
once rotated: no query outside the BEV grid is supervised.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import torch

from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.geometry import yaw_rotation
from gasp_core.models.config import Variant, VoxelizerConfig
from gasp_core.models.voxelizer import VoxelCodes, scatter_packed, voxel_codes
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


class ArrayCache:
    """Decoded arrays keyed by what they were read from, least recently used first out beyond ``max_bytes``.

    Each loader worker holds its own: samples are revisited every epoch, so after the first one a dataset that fits
    is read from memory (no decompression, Arrow-to-NumPy conversion, pose interpolation or frame transforms)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key, make):
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        value = make()
        size = _nbytes(value)
        if size <= self.max_bytes:
            self._items[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= _nbytes(old)
        return value


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, _Rows):
        return _nbytes(value.parts)
    if isinstance(value, VoxelCodes):
        return value.nbytes
    return 0


@numba.njit(cache=True, nogil=True)
def _inside_turned(points, R, dims, lo, hi):  # pragma: no cover
    """Whether each row's first ``dims`` coordinates, x and y turned by the 2x2 ``R``, lie in [lo, hi] (one pass,
    no turned copy of the rows)."""
    ok = np.empty(points.shape[0], np.bool_)
    for i in range(points.shape[0]):
        x, y = points[i, 0], points[i, 1]
        v = (R[0, 0] * x + R[0, 1] * y, R[1, 0] * x + R[1, 1] * y)
        inside = lo[0] <= v[0] <= hi[0] and lo[1] <= v[1] <= hi[1]
        if dims > 2:
            inside = inside and lo[2] <= points[i, 2] <= hi[2]
        ok[i] = inside
    return ok


class _Rows:
    """Rows of a list of arrays indexed as their concatenation, without concatenating them (DINO features: tens of
    thousands of points per sample, of which a few hundred are drawn)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.ends = np.cumsum([len(p) for p in parts])

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index)
        part = np.searchsorted(self.ends, index, side="right")
        start = np.r_[0, self.ends[:-1]]
        out = np.empty((len(index), *self.parts[0].shape[1:]), self.parts[0].dtype)
        for k in np.unique(part):
            m = part == k
            out[m] = self.parts[k][index[m] - start[k]]
        return out


class PretrainDataset(torch.utils.data.Dataset):
    """Items are ``(sample index, draw seed)`` pairs; returns a dict of tensors, ``rotation_rad`` among them (the
    yaw applied to sweeps and queries, 0 without rotation augmentation). ``voxels`` comes bit-packed along x
    (as ``np.packbits(grid, axis=-1)``); :class:`~gasp_core.models.GaspModel` takes it as it is, and
    :func:`~gasp_core.models.voxelizer.unpack_bits` gives the grid.

    DINO targets are the stored PCA features as the teacher gives them; ``dino_standardize`` standardises each
    dimension by ``dino_mean`` / ``dino_std`` (otherwise 0 / 1, so a model given them predicts PCA units).

    ``cache_mib`` bounds the decoded sweeps, query tables, DINO points and poses kept in memory per process
    (:class:`ArrayCache`); 0 reads everything from disk on every draw. Cached or not, a draw is the same array."""

    def __init__(
        self,
        store_dir: Path,
        occupancy_dir: Path,
        dino_dir: Path | None,
        scene: SceneConfig,
        voxelizer: VoxelizerConfig,
        counts: QueryCounts,
        variant: Variant,
        logs: list[str] | None = None,
        dino_standardize: bool = False,
        cache_mib: float = 0.0,
    ) -> None:
        self.store = LogStore(store_dir)
        self.log_ids = list(logs) if logs is not None else self.store.log_ids
        unknown = [lid for lid in self.log_ids if lid not in self.store.log_ids]
        if unknown:
            raise ValueError(f"{store_dir}: no such logs in the store: {unknown}")
        self.occupancy_dir, self.dino_dir = Path(occupancy_dir), (Path(dino_dir) if dino_dir else None)
        self.scene, self.vox, self.counts, self.variant = scene, voxelizer, counts, variant
        self.dino_standardize = dino_standardize
        self.cache_mib = cache_mib
        self._logs: dict = {}
        self._files: dict = {}
        self._cache = ArrayCache(int(cache_mib * 2**20))
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
            self.dino_frames = {
                lid: pl.read_parquet(self.dino_dir / lid / schema.DINO_FRAMES_FILE) for lid in self.log_ids
            }
            first = self.log_ids[0]
            with ipc.open_file(self.dino_dir / first / schema.DINO_POINTS_FILE) as f:
                self.dino_dim = f.schema.field("feature").type.list_size
            if dino_standardize:
                self.dino_mean, self.dino_std = self._feature_stats()
            else:
                self.dino_mean, self.dino_std = np.zeros(self.dino_dim, np.float32), np.ones(self.dino_dim, np.float32)

    def __getstate__(self) -> dict:
        # open files, logs and caches stay in the process that opened them (spawned loader workers make their own)
        return {**self.__dict__, "_logs": {}, "_files": {}, "_cache": ArrayCache(self._cache.max_bytes)}

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

    def _city_T_ego(self, log_id: str, time_ns: int) -> np.ndarray:
        return self._cache.get(("pose", log_id, time_ns), lambda: self._log(log_id).city_T_ego(time_ns)[0])

    def _stacked(self, log_id: str, name: str, batch: int, columns: tuple[str, ...]) -> np.ndarray:
        """(N, len(columns)) float64 of columns of one stored record batch."""
        b = self._batch(log_id, name, batch)
        return np.column_stack([b.column(c).to_numpy().astype(np.float64) for c in columns])

    def _dino_frames(self, log_id: str) -> tuple[np.ndarray, ...]:
        """(camera_ns, sweep_ns, batch) of the log's lifted frames with points."""

        def read():
            f = self.dino_frames[log_id].filter(pl.col("num_points") > 0)
            return tuple(f[c].to_numpy() for c in ("camera_ns", "sweep_ns", "batch"))

        return self._cache.get(("dino_frames", log_id), read)

    def _dino(self, log_id: str, t0_ns: int, t0_T_city: np.ndarray) -> tuple[np.ndarray, _Rows]:
        """Every lifted point of the camera frames within the horizon: (x, y, z, t) in the t0 frame, PCA feature."""
        camera_ns, sweep_ns_all, batches = self._dino_frames(log_id)
        horizon_ns = int(self.scene.horizon_s * 1e9)
        rows = np.flatnonzero((camera_ns >= t0_ns) & (camera_ns <= t0_ns + horizon_ns))
        xyz, t, feat = [], [], []
        for batch, sweep_ns in zip(batches[rows], sweep_ns_all[rows]):
            b = self._batch(log_id, schema.DINO_POINTS_FILE, int(batch))
            T = t0_T_city @ self._city_T_ego(log_id, int(sweep_ns))
            p = np.column_stack([b.column(c).to_numpy() for c in ("x_m", "y_m", "z_m")]).astype(np.float64)
            xyz.append(p @ T[:3, :3].T + T[:3, 3])
            t.append((b.column("t_ns").to_numpy() - t0_ns) / 1e9)
            feat.append(self._features(b))
        if not xyz:
            raise ValueError(f"log {log_id}: no DINO targets within the horizon of t0 = {t0_ns}")
        return np.column_stack([np.concatenate(xyz), np.concatenate(t)]), _Rows(feat)

    def _inputs(self, index: int) -> tuple:
        """What every draw of a sample shares, in its t0 frame before any rotation (cached): the past sweeps as
        yaw-invariant voxel codes (height bins and intensity levels worked out once, a draw only turns x, y), the
        occupancy queries (xyzt, label, source), the ego-path queries (xyt, label) and the DINO points (xyzt,
        features)."""

        def read():
            log_id, batch, t0_ns, past_ns = self.samples[index]
            log = self._log(log_id)
            t0_T_city = np.linalg.inv(self._city_T_ego(log_id, t0_ns))
            sweeps = []
            for ts in past_ns:  # StoredLog.sweep_points_in, with the poses cached
                T = t0_T_city @ self._city_T_ego(log_id, ts)
                sweep = log.sweep(ts)
                points = sweep.points_ego.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
                if self.vox.intensity_levels:
                    points = np.column_stack([points, sweep.intensity.astype(np.float64)])
                sweeps.append(points[~self._never_inside(points)])
            occ = self._batch(log_id, schema.OCCUPANCY_FILE, batch)
            occupancy = (
                self._stacked(log_id, schema.OCCUPANCY_FILE, batch, ("x_m", "y_m", "z_m", "t_s")),
                occ.column("occupied").to_numpy().astype(np.float32),
                occ.column("source").to_numpy(),
            )
            ego = ()
            if self.variant.ego:
                inside = self._batch(log_id, schema.EGO_PATH_FILE, batch).column("inside").to_numpy().astype(np.float32)
                ego = (self._stacked(log_id, schema.EGO_PATH_FILE, batch, ("x_m", "y_m", "t_s")), inside)
            dino = ()
            if self.use_dino:  # only points that some yaw can bring inside the grid, within the horizon, can be drawn
                xyzt, feat = self._dino(log_id, t0_ns, t0_T_city)
                rows = np.flatnonzero(
                    ~self._never_inside(xyzt) & (xyzt[:, 3] >= 0) & (xyzt[:, 3] <= self.scene.horizon_s)
                )
                dino = (xyzt[rows], feat, rows)
            return voxel_codes(sweeps, self.scene, self.vox), occupancy, ego, dino

        return self._cache.get(("sample", index), read)

    def _never_inside(self, xyz: np.ndarray) -> np.ndarray:
        """Points outside the grid under every yaw about the t0 origin: beyond the farthest corner of the extent (plus
        a metre) or outside its height range (which a yaw leaves alone). Dropping them changes no voxel and no draw."""
        corners = np.array([[x, y] for x in self.scene.extent_m[:2] for y in self.scene.extent_m[2:4]])
        reach = float(np.hypot(corners[:, 0], corners[:, 1]).max()) + 1.0
        z0, z1 = self.scene.extent_m[4:]
        return (np.hypot(xyz[:, 0], xyz[:, 1]) > reach) | (xyz[:, 2] < z0) | (xyz[:, 2] > z1)

    def _draw(
        self,
        rng: np.random.Generator,
        points: np.ndarray,
        R: np.ndarray,
        dims: int,
        n: int,
        what: str,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows of ``points`` (their x, y turned by ``R``) drawn uniformly among the ``allowed`` ones whose
        first ``dims`` coordinates lie inside ``scene.extent_m`` once turned: without replacement when there are
        enough, with replacement otherwise. Returns the rows and their turned points.

        Which rows are inside is found in one compiled pass over the rows (:func:`_inside_turned`); only the drawn
        rows are turned (with NumPy, as before). The draws of a seed are those of earlier releases (210 of 210 study
        items compared equal); only a row within an ulp of the extent's edge could fall on the other side, as the
        compiled test turns without a fused multiply-add."""
        if points.ndim != 2 or points.shape[1] < max(dims, 2):
            raise ValueError(f"{what}: queries of shape {points.shape}, expected (N, {max(dims, 2)}+)")
        lo, hi = self.scene.box_min, self.scene.box_max
        ok = _inside_turned(points, np.ascontiguousarray(R, np.float64), dims, lo, hi)
        if allowed is not None:
            ok &= allowed
        pool = np.flatnonzero(ok)
        if not len(pool):
            raise ValueError(f"{what}: no candidate query inside scene.extent_m")
        rows = rng.choice(pool, n, replace=len(pool) < n)
        turned = points[rows]
        turned[:, :2] = turned[:, :2] @ R.T
        return rows, turned

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        log_id, batch, t0_ns, past_ns = self.samples[index]
        rng = np.random.default_rng([seed, index])
        # the yaw comes first: queries are picked among those still inside the BEV grid once rotated
        rotation_rad = rng.uniform(-np.pi, np.pi) if self.variant.rotation_augmentation else 0.0
        R = yaw_rotation(rotation_rad)[:2, :2]
        where = f"log {log_id} sample {batch}"
        codes, (occ_xyzt, occ_label, source), ego, dino = self._inputs(index)  # cached, never written to
        allowed = None if self.variant.missing_rays else source != QuerySource.MISSING
        pick, q = self._draw(rng, occ_xyzt, R, 3, self.counts.occupancy, f"{where}: occupancy", allowed)
        item_out = {"occupancy_q": q, "occupancy_label": occ_label[pick]}
        if self.variant.ego:
            e, q = self._draw(rng, ego[0], R, 2, self.counts.ego, f"{where}: ego path")
            item_out["ego_q"], item_out["ego_label"] = q, ego[1][e]
        if self.use_dino:
            dino_xyzt, feat, rows = dino
            d, q = self._draw(rng, dino_xyzt, R, 3, self.counts.dino, f"{where}: DINO")
            target = feat[rows[d]].astype(np.float32)
            if self.dino_standardize:
                target = (target - self.dino_mean) / self.dino_std
            item_out["dino_q"], item_out["dino_target"] = q, target
        # voxelize() of the rotated sweeps, bit-packed along x: an eighth of the bytes through the worker queue's
        # shared memory (whose page faults cost the training step) and to the device; the model unpacks them
        R_grid = R if self.variant.rotation_augmentation else None
        item_out["voxels"] = scatter_packed(codes, self.scene, self.vox, R_grid)
        item_out["rotation_rad"] = np.float32(rotation_rad)
        return {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.uint8 if k == "voxels" else np.float32))
            for k, v in item_out.items()
        }
