"""How semantic is a feature? A linear probe of the surface class of lidar points from their features.

The probe is fitted on points of the training logs and scored on points of the test logs (never the other way), with
a multinomial logistic regression (scikit-learn) on standardised features. Scores: overall accuracy, each class's IoU
on the test points (TP / (TP + FP + FN)) and their mean over the classes present in the test truth. Used for the
teacher's targets (``dino_targets``), the colour at the pixel (the floor) and the pre-trained model's predicted DINO
field (``probe`` stage), always on the same kind of points: lidar returns seen by a camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeConfig:
    max_train_points: int = 20000
    """Training points the probe is fitted on (a seeded random subset of the training logs' points)."""
    max_test_points: int = 20000
    """Test points it is scored on (a seeded random subset of the test logs' points)."""
    points_per_frame: int = 200
    """Points kept per camera frame for the probe (a seeded subset of the frame's lifted points)."""
    regularization: float = 1.0
    """Inverse L2 strength ``C`` of the logistic regression."""
    max_iter: int = 300
    """Iterations of the solver (lbfgs)."""
    seed: int = 0
    """Seed of the subsets."""


@dataclass
class ProbeSet:
    """Features (N, D) and integer classes (N,) of the points of one split."""

    features: np.ndarray
    classes: np.ndarray

    @classmethod
    def concat(cls, parts: list[ProbeSet]) -> ProbeSet:
        if not parts:
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
        return cls(np.concatenate([p.features for p in parts]), np.concatenate([p.classes for p in parts]))

    def subset(self, n: int, rng: np.random.Generator) -> ProbeSet:
        if len(self.classes) <= n:
            return self
        pick = np.sort(rng.choice(len(self.classes), n, replace=False))
        return ProbeSet(self.features[pick], self.classes[pick])


def iou_per_class(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU of each class (NaN where the class is neither true nor predicted)."""
    cm = np.bincount(truth * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def linear_probe(train: ProbeSet, test: ProbeSet, class_names: list[str], cfg: ProbeConfig | None = None) -> dict:
    """Fit on ``train``, score on ``test``: accuracy, mIoU over the classes present in the test truth, and per-class
    IoU (None for a class absent from the test truth). Errors when a split has no points or one class only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = cfg or ProbeConfig()
    rng = np.random.default_rng(cfg.seed)
    train, test = train.subset(cfg.max_train_points, rng), test.subset(cfg.max_test_points, rng)
    if len(train.classes) == 0 or len(test.classes) == 0:
        raise ValueError(f"probe: no points to fit on ({len(train.classes)}) or to score ({len(test.classes)})")
    if len(np.unique(train.classes)) < 2:
        raise ValueError("probe: the training points hold a single surface class; nothing to separate")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.regularization, max_iter=cfg.max_iter))
    model.fit(train.features.astype(np.float64), train.classes)
    pred = model.predict(test.features.astype(np.float64))
    k = len(class_names)
    iou = iou_per_class(test.classes, pred, k)
    present = np.bincount(test.classes, minlength=k) > 0
    return {
        "accuracy": round(float(np.mean(pred == test.classes)), 4),
        "mIoU": round(float(np.mean(np.nan_to_num(iou[present]))), 4),
        "train_points": int(len(train.classes)),
        "test_points": int(len(test.classes)),
        "IoU": {class_names[c]: (round(float(np.nan_to_num(iou[c])), 4) if present[c] else None) for c in range(k)},
    }
