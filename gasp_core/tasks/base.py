"""What every downstream task is: a :class:`Task` builds its head, draws a training loss from a batch of samples and
scores a set of samples into an :class:`Evaluation`; helpers the tasks share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import MAIN_METRIC, FinetuneConfig, TaskLabelsConfig

log = logging.getLogger(__name__)
Item = tuple[str, int]  # (log id, sample index in the log)


@dataclass
class Evaluation:
    """What scoring a head (or a non-learned baseline) on a set of samples gives."""

    metrics: dict[str, float]
    qualitative: dict[str, np.ndarray] = field(default_factory=dict)
    """Predictions on the first sample, for the report's figures."""
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-sample statistics (leading axis = the samples) of the main metric: ``Task.main_from_stats`` of their
    sum is the main metric; the report's bootstrap resamples them."""


class Task:
    """One downstream task over the task labels (and, for 4D occupancy, the stored ray queries)."""

    name = ""

    def __init__(self, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> None:
        self.labels, self.occupancy_dir, self.scene, self.cfg = labels, Path(occupancy_dir), scene, cfg
        self.label_cfg = from_dict(TaskLabelsConfig, labels.manifest["config"], f"{labels.root}/manifest.json config")

    @property
    def selection(self) -> dict[str, tuple[str, str]]:
        """Model selection on validation: head part ('' = the whole head) -> (metric, better) it is chosen by."""
        return {"": MAIN_METRIC[self.name]}

    def head(self, feat_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, bev: Tensor, items: list[Item], rng: np.random.Generator) -> Tensor:
        raise NotImplementedError

    co_primary: tuple[tuple[str, str, Callable], ...] = ()
    """Metrics reported beside the main one with intervals and verdicts of their own: (metric, "higher" | "lower",
    the metric from per-sample statistics like :meth:`main_from_stats`)."""

    histogram_stats: tuple[str, ...] = ()
    """Names of the statistics that are AP score histograms (S, ..., 2, bins): the evaluation stores them with
    :func:`gasp_core.tasks.metrics.compact_histograms` (exact, and the bootstrap then costs far less)."""

    def evaluate(self, head: nn.Module, bev_of, items: list[Item]) -> Evaluation:
        """Metrics, figures' arrays and bootstrap statistics; ``bev_of(items)`` gives the items' BEV features."""
        raise NotImplementedError

    def baseline(self, items: list[Item]) -> Evaluation | None:
        """A non-learned reference scored like a head (same metrics and statistics), or None."""
        return None

    def zero_shot(self, model: nn.Module, items: list[Item]) -> Evaluation | None:
        """A pre-trained model's own decoder for this task, scored with no labels like a head (same metrics and
        statistics), or None where the task or the model has none."""
        return None

    @staticmethod
    def main_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
        """The main metric from per-sample statistics summed over samples (leading axis: bootstrap replicates;
        ``weight``: the number of samples in each)."""
        raise NotImplementedError

    def _arr(self, item: Item, key: str) -> np.ndarray:
        return self.labels.log(item[0])[key][item[1]]

    def _rows(self, item: Item, key: str, sample_key: str) -> np.ndarray:
        arrays = self.labels.log(item[0])
        return arrays[key][arrays[sample_key] == item[1]]


def _t(x, device) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


def _batched_queries(head: nn.Module, bev: Tensor, q: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Head outputs for many queries (N, D) on one sample's BEV (1, C, h, w), in chunks."""
    outs = []
    for i in range(0, len(q), chunk):
        outs.append(head(bev, _t(q[None, i : i + chunk], bev.device))[0].float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1))


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def _nanstd(values) -> float:
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.std()) if len(v) else float("nan")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
