"""UnO-style implicit decoder: a BEV feature at the query, features at learned offsets, and a residual MLP
conditioned on the query's Fourier encoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gasp_core.models.config import DecoderConfig


class FourierEncoding(nn.Module):
    """``(..., D)`` coordinates in [0, 1] -> ``(..., D * (2F + 1))``: the coordinates and sin/cos at F octaves."""

    def __init__(self, dims: int, frequencies: int) -> None:
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        self.out_dim = dims * (2 * frequencies + 1)

    def forward(self, x: Tensor) -> Tensor:
        ang = x[..., None] * self.freqs  # (..., D, F)
        return torch.cat([x, torch.sin(ang).flatten(-2), torch.cos(ang).flatten(-2)], dim=-1)


def sample_bev(bev: Tensor, xy_norm: Tensor) -> Tensor:
    """Bilinear features ``(B, N, C)`` of ``bev`` (B, C, H, W) at normalised xy ``(B, N, 2)`` in [-1, 1]."""
    out = F.grid_sample(bev, xy_norm[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[..., 0].transpose(1, 2)


class ImplicitDecoder(nn.Module):
    """Queries ``(B, N, D)`` (normalised to [0, 1]: x, y, [z,] t) on a BEV map -> ``(B, N, out_dim)``."""

    def __init__(
        self, feat_dim: int, query_dims: int, out_dim: int, cfg: DecoderConfig, extent_xy_m: tuple[float, float]
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.pe = FourierEncoding(query_dims, cfg.pe_frequencies)
        h = cfg.hidden
        self.inp = nn.Linear(feat_dim + self.pe.out_dim, h)
        self.offset = nn.Linear(h, 2 * cfg.offsets)
        # offsets in metres -> normalised grid units (the grid spans 2 units over the extent)
        self.register_buffer("offset_to_norm", 2.0 * cfg.offset_scale_m / torch.tensor(extent_xy_m), persistent=False)
        self.gather = nn.Linear(cfg.offsets * feat_dim, h) if cfg.offsets else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(h + self.pe.out_dim, h), nn.ReLU(inplace=True), nn.Linear(h, h))
            for _ in range(cfg.blocks)
        )
        self.out = nn.Linear(h, out_dim)

    def forward(self, bev: Tensor, q: Tensor) -> Tensor:
        xy = q[..., :2] * 2.0 - 1.0
        pe = self.pe(q)
        h = F.relu(self.inp(torch.cat([sample_bev(bev, xy), pe], dim=-1)))
        if self.gather is not None:
            b, n, _ = xy.shape
            off = torch.tanh(self.offset(h)).view(b, n, self.cfg.offsets, 2) * self.offset_to_norm
            pts = (xy[:, :, None, :] + off).reshape(b, n * self.cfg.offsets, 2)
            h = h + F.relu(self.gather(sample_bev(bev, pts).reshape(b, n, -1)))
        for block in self.blocks:
            h = h + block(torch.cat([h, pe], dim=-1))
        return self.out(F.relu(h))
