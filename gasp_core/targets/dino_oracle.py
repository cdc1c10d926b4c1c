"""The oracle teacher of the DINO targets: the simulator's surface class of each lidar point, as a fixed embedding.

A control that real data cannot have: no camera teacher knows the true class of every lidar return, and only the
simulator writes one (``lifted.surface``, from the store's per-return labels). Its targets say how far the DINO
objective could go with perfectly semantic features. No network is built or run: each class gets one fixed unit
vector, and everything after (the PCA fitted on the training logs' frames, the stored per-point schema, the lift and
its random draws, the probe) is the teacher's path, so oracle and teacher targets of one store hold the same points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from gasp_core.targets.dino_lift import lift_frame
from gasp_core.teacher.pca import FeaturePCA

if TYPE_CHECKING:
    from gasp_core.data.store import LogStore
    from gasp_core.targets.dino import DinoTargetsConfig, Frame

ORACLE_DIM = 384
"""Dimension of the oracle's per-class embedding: that of the default teacher (ViT-S/14), so the PCA sees the same
width. The embedding has rank (classes - 1) after centring, below ``pca_dim`` when there are few classes."""
ORACLE_MODEL = "oracle"
ORACLE_WEIGHTS = "oracle:surface-class"
EMBEDDING_STREAM = 7
"""Second key of the embedding's random stream (``default_rng([seed, 7])``), apart from the frame draws."""


def oracle_embedding(num_classes: int, seed: int) -> np.ndarray:
    """(num_classes, ORACLE_DIM) float32: one standard-normal vector per surface class, unit-normalised."""
    e = np.random.default_rng([seed, EMBEDDING_STREAM]).standard_normal((num_classes, ORACLE_DIM))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class OracleTeacher:
    """The surface classes as a teacher. Carries the identity a ``DinoTeacher`` records (model, weights, random,
    feature dimension) so the manifest, ``teacher.json`` and the metrics name it; it has no forward pass."""

    embedding: np.ndarray
    """(classes, ORACLE_DIM) float32, row c the feature of every point of class c."""
    model_name: str = ORACLE_MODEL
    weights_id: str = ORACLE_WEIGHTS
    is_random: bool = False
    dim: int = ORACLE_DIM
    classes: list[str] = field(default_factory=list)

    @classmethod
    def for_classes(cls, classes: list[str], seed: int) -> OracleTeacher:
        return cls(oracle_embedding(len(classes), seed), classes=list(classes))

    def class_index(self, surface: np.ndarray | None) -> np.ndarray:
        """(P,) int64 rows of the embedding for points of surface classes ``surface``; an error for a class the
        store does not name."""
        if surface is None:
            raise ValueError("oracle DINO targets: a lifted frame has no surface labels")
        surface = np.asarray(surface, dtype=np.int64)
        if len(surface) and (surface.min() < 0 or surface.max() >= len(self.embedding)):
            raise ValueError(
                f"oracle DINO targets: surface class {int(surface.max())} outside the store's "
                f"{len(self.embedding)} classes {self.classes}"
            )
        return surface

    def features(self, surface: np.ndarray | None) -> np.ndarray:
        """(P, ORACLE_DIM) features of points of classes ``surface`` (P,)."""
        return self.embedding[self.class_index(surface)]

    def pca_table(self, pca: FeaturePCA) -> np.ndarray:
        """(classes, pca_dim) float16: the stored target of each class (every point of a class gets the same)."""
        return pca.transform(torch.from_numpy(self.embedding)).numpy().astype(np.float16)


def image_hw(path) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as exc:
        raise ValueError(f"camera image {path}: unreadable ({exc})") from exc
    return h, w


def fit_oracle_pca(
    oracle: OracleTeacher,
    store: LogStore,
    frames: list[Frame],
    cfg: DinoTargetsConfig,
    max_tokens: int = 200_000,
) -> FeaturePCA:
    """The oracle's ``fit_pca``: the same frame draw, the oracle features of the points those frames lift (in
    place of the teacher's patch tokens), at most ``max_tokens`` of them, one PCA."""
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(len(frames), size=min(cfg.pca_fit_frames, len(frames)), replace=False))
    surfaces = []
    for f in (frames[i] for i in pick):
        h, w = image_hw(f.image_path)
        lifted = lift_frame(store.log(f.log_id), f.camera, f.camera_ns, w, h, cfg.lift, rng)
        if lifted is not None:
            surfaces.append(lifted.surface)
    surface = np.concatenate(surfaces) if surfaces else np.zeros(0, np.int64)
    if len(surface) == 0:
        raise ValueError(f"{store.root}: the oracle PCA's {len(pick)} fit frames lift no lidar points")
    if len(surface) > max_tokens:
        surface = surface[rng.choice(len(surface), max_tokens, replace=False)]
    return FeaturePCA.fit(torch.from_numpy(oracle.features(surface)), cfg.pca_dim)
