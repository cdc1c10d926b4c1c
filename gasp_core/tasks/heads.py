"""Task heads on the BEV feature map: implicit (queried at points), convolutional (dense BEV) and pooled
(trajectory)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gasp_core.data.samples import SceneConfig
from gasp_core.models.config import DecoderConfig
from gasp_core.models.implicit_decoder import ImplicitDecoder


class ImplicitHead(nn.Module):
    """Queries in metres / seconds of the t0 frame -> ``out_dim`` logits, read off the BEV map by an UnO-style
    implicit decoder. ``dims`` picks which of (x, y, z, t) the queries carry: (0, 1, 3) for BEV (x, y, t)."""

    def __init__(
        self, feat_dim: int, out_dim: int, dims: tuple[int, ...], scene: SceneConfig, cfg: DecoderConfig
    ) -> None:
        super().__init__()
        self.dims = list(dims)
        extent_xy = (scene.extent_m[1] - scene.extent_m[0], scene.extent_m[3] - scene.extent_m[2])
        self.decoder = ImplicitDecoder(feat_dim, len(dims), out_dim, cfg, extent_xy)
        lo = torch.tensor([*scene.box_min, 0.0], dtype=torch.float32)[self.dims]
        span = torch.tensor([*(scene.box_max - scene.box_min), scene.horizon_s], dtype=torch.float32)[self.dims]
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("span", span, persistent=False)

    def forward(self, bev: Tensor, q: Tensor) -> Tensor:
        return self.decoder(bev, (q - self.lo) / self.span)


class MapHead(nn.Module):
    """BEV features -> per-layer logits on the map raster (``out_hw``), upsampled bilinearly. Kept light (two
    3 x 3 convolutions at the feature width, the second dilated: a 7 x 7 cell view, enough to see both curbs of a
    street) so that what it shows is mostly the encoder's features."""

    def __init__(self, feat_dim: int, layers: int, out_hw: tuple[int, int], cfg: DecoderConfig) -> None:
        super().__init__()
        self.out_hw = tuple(out_hw)
        self.net = nn.Sequential(
            nn.Conv2d(feat_dim, feat_dim, 3, padding=1),
            nn.BatchNorm2d(feat_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(feat_dim, feat_dim, 3, padding=2, dilation=2),
            nn.BatchNorm2d(feat_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(feat_dim, layers, 1),
        )

    def forward(self, bev: Tensor) -> Tensor:
        return F.interpolate(self.net(bev), size=self.out_hw, mode="bilinear", align_corners=False)


class TrajectoryHead(nn.Module):
    """BEV features (and, with ``odometry``, the ego's past positions) -> ``steps`` future waypoints (x, y) in metres.

    With odometry the prediction is a residual on constant-velocity extrapolation of the past positions (the
    ego-motion compensated sweeps do not show the ego's own speed; odometry does). Strided convolutions over the
    whole map, pooled to a 4 x 4 grid (keeping where things are relative to the ego), feed an MLP whose last layer
    starts at zero: an untrained head with odometry is the constant-velocity baseline, one without stands still.
    The residual is bounded by ``tanh`` to +-``scale_m``."""

    def __init__(
        self,
        feat_dim: int,
        times_s: list[float],
        past_steps: int,
        cfg: DecoderConfig,
        scale_m: float = 10.0,
        odometry: bool = True,
    ) -> None:
        super().__init__()
        h = cfg.hidden
        self.scale_m, self.odometry = scale_m, odometry
        self.register_buffer("times", torch.tensor(times_s, dtype=torch.float32), persistent=False)
        self.conv = nn.Sequential(
            nn.Conv2d(feat_dim, h, 3, stride=2, padding=1),
            nn.BatchNorm2d(h),
            nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        extra = 3 * past_steps + 6 if odometry else 0
        self.mlp = nn.Sequential(
            nn.Linear(16 * h + extra, 2 * h), nn.ReLU(inplace=True), nn.Linear(2 * h, 2 * len(times_s))
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, bev: Tensor, past: Tensor) -> Tensor:
        """``past``: (B, P, 3) = (x, y, t <= 0) of the ego at the input sweeps, oldest first, in the t0 frame
        (ignored without ``odometry``)."""
        base = constant_velocity(past, self.times) if self.odometry else bev.new_zeros(len(bev), len(self.times), 2)
        return base + self.residual(bev, past)

    def residual(self, bev: Tensor, past: Tensor) -> Tensor:
        x = self.conv(bev).flatten(1)
        if self.odometry:
            scaled = past / past.new_tensor([self.scale_m, self.scale_m, 1.0])
            x = torch.cat([x, scaled.flatten(1), kinematics(past) / KINEMATICS_SCALE], dim=1)
        return torch.tanh(self.mlp(x).view(len(bev), -1, 2)) * self.scale_m


class TrajectoryHeads(nn.Module):
    """The planning protocol's two heads, trained side by side on the same features: ``odometry`` (past ego
    positions as input) and ``blind`` (BEV features only, which is where pre-training shows)."""

    def __init__(self, feat_dim: int, times_s: list[float], past_steps: int, cfg: DecoderConfig) -> None:
        super().__init__()
        self.odometry = TrajectoryHead(feat_dim, times_s, past_steps, cfg, odometry=True)
        self.blind = TrajectoryHead(
            feat_dim, times_s, past_steps, cfg, scale_m=40.0, odometry=False
        )  # whole path: up to 40 m
        self.times = self.odometry.times

    def forward(self, bev: Tensor, past: Tensor) -> dict[str, Tensor]:
        return {"odometry": self.odometry(bev, past), "blind": self.blind(bev, past)}


KINEMATICS_SCALE = 10.0
"""m/s (and m/s^2): the odometry's velocities and acceleration enter the MLP divided by this."""


def kinematics(past: Tensor) -> Tensor:
    """(B, 6): the velocity over the whole past (what constant velocity holds), the velocity over its newest step and
    the acceleration between the two halves of the past, each (x, y). A stop or a start shows as a newest velocity
    below or above the average one: explicit, the MLP needs no steps to find it in the raw positions."""
    if past.shape[1] < 3:
        return past.new_zeros(len(past), 6)
    t, mid = past[..., 2], past.shape[1] // 2
    v_old, v_late = _velocity(past, 0, mid), _velocity(past, mid, -1)
    accel = (v_late - v_old) / ((t[:, -1] - t[:, 0]).clamp_min(1e-3)[:, None] / 2)
    v_all, v_new = _velocity(past, 0, -1), _velocity(past, -2, -1)
    return torch.cat([v_all, v_new, accel], dim=1)


def _velocity(past: Tensor, a: int, b: int) -> Tensor:
    """(B, 2) mean velocity between past positions ``a`` and ``b`` (time steps under 1 ms count as 1 ms)."""
    return (past[:, b, :2] - past[:, a, :2]) / (past[:, b, 2] - past[:, a, 2]).clamp_min(1e-3)[:, None]


def constant_velocity(past: Tensor, times: Tensor) -> Tensor:
    """(B, K, 2) positions at ``times`` extrapolated from the velocity between the oldest and newest past position."""
    return past[:, -1, None, :2] + _velocity(past, 0, -1)[:, None, :] * times[None, :, None]
