"""PCA of teacher features, fitted once on a sample of frames across logs and applied to every point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gasp_core.io import atomic_path


@dataclass
class FeaturePCA:
    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (D, C), orthonormal rows
    explained_variance_ratio: torch.Tensor  # (D,)

    @classmethod
    def fit(cls, features: torch.Tensor, dim: int) -> FeaturePCA:
        """Top-``dim`` principal axes of ``features`` (N, C) by an exact SVD of the centred data."""
        x = features.double()
        if dim > min(x.shape):
            raise ValueError(f"PCA dimension {dim} exceeds the {tuple(x.shape)} features it is fitted on")
        mean = x.mean(0)
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
        var = s**2
        total = var.sum()  # zero when every feature is the same (e.g. an oracle whose points hold one class)
        ratio = var[:dim] / total if total > 0 else torch.zeros_like(var[:dim])
        return cls(mean.float(), vh[:dim].float(), ratio.float())

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean.to(features.device)) @ self.components.to(features.device).T

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            save_file(
                {
                    "mean": self.mean.contiguous(),
                    "components": self.components.contiguous(),
                    "explained_variance_ratio": self.explained_variance_ratio.contiguous(),
                },
                str(tmp),
            )

    @classmethod
    def load(cls, path: Path) -> FeaturePCA:
        t = load_file(str(path))
        return cls(t["mean"], t["components"], t["explained_variance_ratio"])
