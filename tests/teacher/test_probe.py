"""The surface-class probe on cases whose answer is known, against scikit-learn's own scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, jaccard_score

from gasp_core.teacher.probe import ProbeConfig, ProbeSet, iou_per_class, linear_probe

CLASSES = ["none", "road", "grass", "vehicle", "pole"]


def _onehot(classes: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return np.eye(len(CLASSES))[classes] + noise * rng.standard_normal((len(classes), len(CLASSES)))


def test_one_hot_features_are_probed_perfectly():
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(1, 5, 800), rng.integers(1, 5, 400)
    r = linear_probe(
        ProbeSet(_onehot(y_train, 0.05, rng), y_train), ProbeSet(_onehot(y_test, 0.05, rng), y_test), CLASSES
    )
    assert r["accuracy"] == 1.0 and r["mIoU"] == 1.0
    assert r["IoU"]["none"] is None  # absent from the test truth: not part of the mean
    assert all(r["IoU"][c] == 1.0 for c in CLASSES[1:])


def test_features_without_information_score_at_chance():
    rng = np.random.default_rng(1)
    y_train, y_test = rng.integers(1, 5, 2000), rng.integers(1, 5, 2000)
    r = linear_probe(
        ProbeSet(rng.standard_normal((2000, 8)), y_train), ProbeSet(rng.standard_normal((2000, 8)), y_test), CLASSES
    )
    assert 0.15 < r["accuracy"] < 0.35 and r["mIoU"] < 0.25  # four balanced classes: chance is 0.25


def test_scores_are_scikit_learns_on_the_test_points_only():
    """Fitted on train, scored on test: a probe whose classes are swapped between the splits scores 0."""
    rng = np.random.default_rng(2)
    y_train = rng.integers(1, 3, 600)
    x_train = _onehot(y_train, 0.1, rng)
    y_test = 3 - y_train[:300]  # the same features, the other class
    r = linear_probe(ProbeSet(x_train, y_train), ProbeSet(x_train[:300], y_test), CLASSES)
    assert r["accuracy"] == 0.0 and r["mIoU"] == 0.0 and r["test_points"] == 300


def test_iou_per_class_is_sklearns_jaccard():
    rng = np.random.default_rng(3)
    truth, pred = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    pred[:200] = truth[:200]
    np.testing.assert_allclose(iou_per_class(truth, pred, 5), jaccard_score(truth, pred, average=None, labels=range(5)))
    r = linear_probe(
        ProbeSet(_onehot(truth, 0.3, rng), truth),
        ProbeSet(_onehot(pred, 0.3, rng), truth),
        CLASSES,
        ProbeConfig(max_train_points=10_000),
    )
    assert r["accuracy"] == pytest.approx(accuracy_score(truth, pred), abs=0.02)


def test_subsets_and_bad_input():
    rng = np.random.default_rng(4)
    y = rng.integers(1, 5, 1000)
    r = linear_probe(
        ProbeSet(_onehot(y, 0.1, rng), y),
        ProbeSet(_onehot(y, 0.1, rng), y),
        CLASSES,
        ProbeConfig(max_train_points=100, max_test_points=50),
    )
    assert (r["train_points"], r["test_points"]) == (100, 50)
    with pytest.raises(ValueError, match="single surface class"):
        linear_probe(
            ProbeSet(np.ones((10, 2)), np.ones(10, np.int64)), ProbeSet(np.ones((5, 2)), np.ones(5, np.int64)), CLASSES
        )
    with pytest.raises(ValueError, match="no points"):
        linear_probe(ProbeSet(np.ones((10, 2)), y[:10]), ProbeSet(np.zeros((0, 2)), np.zeros(0, np.int64)), CLASSES)
