"""Past lidar sweeps -> a dense BEV grid with (time, height) as channels."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
import torch
import torch.nn.functional as F

from gasp_core.data.samples import SceneConfig
from gasp_core.models.config import VoxelizerConfig


def grid_shape(scene: SceneConfig, cfg: VoxelizerConfig) -> tuple[int, int]:
    """(rows along y, columns along x) of the BEV grid."""
    x0, x1, y0, y1 = scene.extent_m[:4]
    return int(round((y1 - y0) / cfg.voxel_size_m)), int(round((x1 - x0) / cfg.voxel_size_m))


def channels(scene: SceneConfig, cfg: VoxelizerConfig) -> int:
    return scene.past_sweeps * (cfg.z_bins + len(cfg.intensity_levels))


def height_bins(grid: np.ndarray, z_bins: int, intensity_levels: int = 0, sweep: int = -1) -> np.ndarray:
    """The (z_bins, H, W) occupancy channels of one sweep (default: the newest, t0's) of a ``voxelize`` grid whose
    voxelizer had ``z_bins`` height bins and ``intensity_levels`` intensity channels per sweep."""
    per_sweep = z_bins + intensity_levels
    blocks = grid.reshape(-1, per_sweep, *grid.shape[1:])
    return blocks[sweep, :z_bins]


@dataclass(frozen=True)
class VoxelCodes:
    """What :func:`voxelize` needs of a set of sweeps that a yaw about the t0 origin leaves alone (height bins,
    intensity levels), worked out once: a rotated draw of the same sweeps (:func:`scatter_packed`) only moves ``xy``.

    Every point inside the height range keeps its ``xy`` row and the channel of its height bin (points outside it set
    no channel and are dropped); with intensity levels, entry ``e`` of ``lit_point`` / ``lit_channel`` says that the
    ground return ``lit_point[e]`` reaches the level of channel ``lit_channel[e]``. Compact (about 20 bytes a point),
    as a loader caches one per sample."""

    xy: np.ndarray
    """(M, 2) float64 x, y in the t0 frame."""
    height: np.ndarray
    """(M,) int16 channel of each point's height bin."""
    lit_point: np.ndarray
    """(L,) int32 row of ``xy``."""
    lit_channel: np.ndarray
    """(L,) int16 intensity channel that row lights."""
    shape: tuple[int, int, int]
    """(channels, rows, columns) of the grid."""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.xy, self.height, self.lit_point, self.lit_channel))


def voxel_codes(sweeps_t0: list[np.ndarray], scene: SceneConfig, cfg: VoxelizerConfig) -> VoxelCodes:
    """The yaw-invariant codes of ``sweeps_t0`` (as :func:`voxelize` takes them)."""
    if len(sweeps_t0) != scene.past_sweeps:
        raise ValueError(f"expected {scene.past_sweeps} past sweeps, got {len(sweeps_t0)}")
    levels = np.asarray(cfg.intensity_levels, np.float64)
    z0, z1 = scene.extent_m[4:]
    dz = (z1 - z0) / cfg.z_bins
    per_sweep = cfg.z_bins + len(levels)
    shape = (scene.past_sweeps * per_sweep, *grid_shape(scene, cfg))
    if shape[0] > np.iinfo(np.int16).max:
        raise ValueError(f"{shape[0]} voxel channels: at most {np.iinfo(np.int16).max} are supported")
    xy, height, lit_point, lit_channel, n = [], [], [], [], 0
    for k, pts in enumerate(sweeps_t0):
        if len(levels) and (pts.ndim != 2 or pts.shape[1] < 4):
            raise ValueError(
                f"sweep {k}: intensity levels {cfg.intensity_levels} need (N, 4) points with intensity, "
                f"got shape {pts.shape}"
            )
        iz = pts[:, 2] - z0  # floor((z - z0) / dz), as a float: no int array of every point
        iz /= dz
        np.floor(iz, out=iz)
        ok = (iz >= 0) & (iz < cfg.z_bins)
        pts = pts[ok]
        xy.append(pts[:, :2])
        height.append((k * per_sweep + iz[ok]).astype(np.int16))
        if len(levels):  # channel l: some ground return of the cell is at least level l bright
            ground = pts[:, 2] <= cfg.intensity_max_z_m
            for lvl, level in enumerate(levels):
                lit = np.flatnonzero(ground & (pts[:, 3] >= level))
                lit_point.append((n + lit).astype(np.int32))
                lit_channel.append(np.full(len(lit), k * per_sweep + cfg.z_bins + lvl, np.int16))
        n += len(pts)
    if n >= np.iinfo(np.int32).max:
        raise ValueError(f"{n} points: at most {np.iinfo(np.int32).max - 1} are supported")
    return VoxelCodes(
        np.ascontiguousarray(np.concatenate(xy), np.float64),
        np.concatenate(height),
        np.concatenate(lit_point) if lit_point else np.zeros(0, np.int32),
        np.concatenate(lit_channel) if lit_channel else np.zeros(0, np.int16),
        shape,
    )


@numba.njit(cache=True, nogil=True)
def _scatter_bits(xy, height, lit_point, lit_channel, R, rotate, x0, y0, size, rows, cols, out):  # pragma: no cover
    """Sets the bits of ``out`` (channels, rows, ceil(cols / 8)), first element in the high bit, in one pass over
    the points and one over the lit entries (compiled: NumPy would take a dozen passes and temporaries)."""
    cell = np.empty(xy.shape[0], np.int64)
    for i in range(xy.shape[0]):
        x, y = xy[i, 0], xy[i, 1]
        if rotate:
            x, y = R[0, 0] * x + R[0, 1] * y, R[1, 0] * x + R[1, 1] * y
        ix = np.floor((x - x0) / size)  # floor((p - lower) / size), as everywhere else
        iy = np.floor((y - y0) / size)
        if ix >= 0 and ix < cols and iy >= 0 and iy < rows:  # False for NaN too
            r, c = int(iy), int(ix)
            cell[i] = r * cols + c
            out[height[i], r, c >> 3] |= np.uint8(128 >> (c & 7))
        else:
            cell[i] = -1
    for e in range(lit_point.shape[0]):
        k = cell[lit_point[e]]
        if k >= 0:
            r, c = k // cols, k % cols
            out[lit_channel[e], r, c >> 3] |= np.uint8(128 >> (c & 7))


def scatter_packed(
    codes: VoxelCodes, scene: SceneConfig, cfg: VoxelizerConfig, R: np.ndarray | None = None
) -> np.ndarray:
    """The binary grid of ``codes``, their points first turned by the 2x2 rotation ``R`` (x, y -> R @ (x, y)) when
    given, bit-packed along x as ``np.packbits(grid, axis=-1)`` packs it: (channels, rows, ceil(columns / 8))
    uint8. ``voxelize`` of the rotated sweeps, at the cost of moving the points and setting their bits: no height or
    intensity work, and an eighth of the bytes through a loader's worker queue and to the device
    (:func:`unpack_bits`)."""
    c, rows, cols = codes.shape
    out = np.zeros((c, rows, -(-cols // 8)), np.uint8)
    rotation = np.eye(2) if R is None else np.ascontiguousarray(R, np.float64)
    _scatter_bits(
        codes.xy,
        codes.height,
        codes.lit_point,
        codes.lit_channel,
        rotation,
        R is not None,
        float(scene.extent_m[0]),
        float(scene.extent_m[2]),
        float(cfg.voxel_size_m),
        rows,
        cols,
        out,
    )
    return out


def voxelize(sweeps_t0: list[np.ndarray], scene: SceneConfig, cfg: VoxelizerConfig) -> np.ndarray:
    """Binary occupancy (past_sweeps * (z_bins + L), H, W) float32 of points already in the t0 frame, L =
    ``len(cfg.intensity_levels)``.

    ``sweeps_t0`` lists the past sweeps oldest first (the last is t0's), each (N, 3) x, y, z or, with intensity
    levels, (N, 4) x, y, z, intensity; with C = z_bins + L, channel ``k * C + z`` holds sweep k, height bin z, and
    channel ``k * C + z_bins + l`` whether the cell holds a return at most ``intensity_max_z_m`` high with intensity
    of at least level l. Points outside the extent are dropped. (:func:`voxel_codes`, then :func:`scatter_packed`.)
    """
    packed = scatter_packed(voxel_codes(sweeps_t0, scene, cfg), scene, cfg)
    return np.unpackbits(packed, axis=-1)[..., : grid_shape(scene, cfg)[1]].astype(np.float32)


@cache
def _bit_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(256, 8) the bits of each byte value, high bit first."""
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
    return torch.from_numpy(bits).to(device=device, dtype=dtype)


def unpack_bits(packed: torch.Tensor, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The inverse of ``np.packbits(grid, axis=-1)`` in torch, on ``packed``'s device: (..., ceil(width / 8)) uint8 ->
    (..., width) 0/1 of ``dtype`` (one table lookup per byte)."""
    if packed.dtype != torch.uint8 or packed.shape[-1] != -(-width // 8):
        raise ValueError(
            f"bit-packed voxels of width {width} are uint8 with {-(-width // 8)} bytes in the last axis, got "
            f"{packed.dtype} of shape {tuple(packed.shape)}"
        )
    return F.embedding(packed.long(), _bit_table(packed.device, dtype)).flatten(-2)[..., :width]
