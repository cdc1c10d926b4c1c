"""BEV encoder: a timm CNN over the voxel grid with a small FPN back to ``out_stride``."""

from __future__ import annotations

import timm
import torch.nn.functional as F
from torch import Tensor, nn

from gasp_core.models.config import EncoderConfig


class BEVEncoder(nn.Module):
    """``(B, C_in, H, W)`` voxels -> ``(B, width, H / out_stride, W / out_stride)`` BEV features."""

    def __init__(self, in_channels: int, cfg: EncoderConfig) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            cfg.backbone, pretrained=False, features_only=True, in_chans=in_channels, out_indices=tuple(cfg.out_indices)
        )
        chans = self.backbone.feature_info.channels()
        self.strides = self.backbone.feature_info.reduction()
        if cfg.out_stride not in self.strides:
            raise ValueError(f"out_stride {cfg.out_stride} is not one of the backbone strides {self.strides}")
        self.out_level = self.strides.index(cfg.out_stride)
        self.lateral = nn.ModuleList(nn.Conv2d(c, cfg.width, 1) for c in chans)
        self.smooth = nn.Sequential(
            nn.Conv2d(cfg.width, cfg.width, 3, padding=1),
            nn.BatchNorm2d(cfg.width),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.width, cfg.width, 3, padding=1),
        )

    def forward(self, voxels: Tensor) -> Tensor:
        """``voxels``: (B, C, H, W), float or the loader's uint8 (cast here, on the device)."""
        feats = self.backbone(voxels if voxels.is_floating_point() else voxels.float())
        top = self.lateral[-1](feats[-1])
        for level in range(len(feats) - 2, self.out_level - 1, -1):  # top-down to the output level
            lat = self.lateral[level](feats[level])
            top = lat + F.interpolate(top, size=lat.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(top)
