"""What every downstream task is: a :class:`Task` names its labels, builds its head, draws a training loss from a batch
of samples and scores a set of samples into an :class:`Evaluation`; it also says how the report shows it. Helpers
the tasks share: :func:`to_tensor`, :func:`batched_queries`, :func:`nanmean`, :func:`nanstd`, :func:`sigmoid`."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig, TaskLabelsConfig
from gasp_core.tasks.label_builder import LabelBuilder

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


class Task(ABC):
    """One downstream task over the task labels (and, for 4D occupancy, the stored ray queries).

    The class attributes are what the registry (:mod:`gasp_core.tasks.registry`) reads: a task is added by writing
    its package (labels builder, task, figure) and one line there."""

    name: ClassVar[str]
    """The task's name in params, dvc.yaml's matrix, file names and metrics."""
    title: ClassVar[str]
    """The task's title in the report."""
    main_metric: ClassVar[tuple[str, str]]
    """(metric, "higher" | "lower"): the headline metric and which direction is better."""
    metric_titles: ClassVar[dict[str, str]] = {}
    """How the report names the main and co-primary metrics (a metric not listed is shown by its key)."""
    secondary: ClassVar[tuple[str, ...]] = ()
    """The metrics of the report's secondary table, in its column order."""
    label_builders: ClassVar[tuple[type[LabelBuilder], ...]] = ()
    """The builders of the labels this task reads (the task labels stage runs every registered task's)."""
    figure: ClassVar[Callable[..., Path] | None] = None
    """The report's figure of the evaluate stage's qualitative arrays: ``figure({init: arrays}, png, labels)``."""
    figure_rank: ClassVar[int] = 100
    """Place of the figure among the report's figures (ascending; ties keep the registry's order): the BEV rasters
    first, then the trajectory, then the 3D tasks."""
    pr_curve: ClassVar[str | None] = None
    """For a task with AP histograms: what its precision-recall curve pools (the title of its ``dvc.yaml`` plot)."""
    histogram_stats: ClassVar[tuple[str, ...]] = ()
    """Names of the statistics that are AP score histograms (S, ..., 2, bins): the evaluation stores them with
    :func:`gasp_core.tasks.metrics.compact_histograms` (exact, and the bootstrap then costs far less)."""
    co_primary: ClassVar[tuple[tuple[str, str, Callable], ...]] = ()
    """Metrics reported beside the main one with intervals and verdicts of their own: (metric, "higher" | "lower",
    the metric from per-sample statistics like :meth:`main_from_stats`)."""

    def __init__(self, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> None:
        self.labels, self.occupancy_dir, self.scene, self.cfg = labels, Path(occupancy_dir), scene, cfg
        self.label_cfg = from_dict(TaskLabelsConfig, labels.manifest["config"], f"{labels.root}/manifest.json config")

    @property
    def selection(self) -> dict[str, tuple[str, str]]:
        """Model selection on validation: head part ('' = the whole head) -> (metric, better) it is chosen by."""
        return {"": self.main_metric}

    @abstractmethod
    def head(self, feat_dim: int) -> nn.Module:
        """A fresh head on BEV features of ``feat_dim`` channels."""

    @abstractmethod
    def loss(self, head: nn.Module, bev: Tensor, items: list[Item], rng: np.random.Generator) -> Tensor:
        """The training loss of a batch (its queries drawn from ``rng``)."""

    @abstractmethod
    def evaluate(self, head: nn.Module, bev_of, items: list[Item]) -> Evaluation:
        """Metrics, figures' arrays and bootstrap statistics; ``bev_of(items)`` gives the items' BEV features."""

    def baseline(self, items: list[Item]) -> Evaluation | None:
        """A non-learned reference scored like a head (same metrics and statistics), or None."""
        return None

    def zero_shot(self, model: nn.Module, items: list[Item]) -> Evaluation | None:
        """A pre-trained model's own decoder for this task, scored with no labels like a head (same metrics and
        statistics), or None where the task or the model has none."""
        return None

    @staticmethod
    @abstractmethod
    def main_from_stats(stats: dict[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
        """The main metric from per-sample statistics summed over samples (leading axis: bootstrap replicates;
        ``weight``: the number of samples in each)."""

    @classmethod
    def has_baseline(cls) -> bool:
        return cls.baseline is not Task.baseline

    @classmethod
    def has_zero_shot(cls) -> bool:
        return cls.zero_shot is not Task.zero_shot

    def sample_array(self, item: Item, key: str) -> np.ndarray:
        """The item's entry of a per-sample label array (leading axis: the log's samples)."""
        return self.labels.log(item[0])[key][item[1]]

    def sample_rows(self, item: Item, key: str, sample_key: str) -> np.ndarray:
        """The item's rows of a label array whose rows carry their sample index in ``sample_key``."""
        arrays = self.labels.log(item[0])
        return arrays[key][arrays[sample_key] == item[1]]


def to_tensor(x, device) -> Tensor:
    """A float32 tensor on ``device``."""
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


def batched_queries(head: nn.Module, bev: Tensor, q: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Head outputs for many queries (N, D) on one sample's BEV (1, C, h, w), in chunks."""
    outs = []
    for i in range(0, len(q), chunk):
        outs.append(head(bev, to_tensor(q[None, i : i + chunk], bev.device))[0].float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1))


def nanmean(values) -> float:
    """Mean of the values that are neither None nor NaN (NaN when none is)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def nanstd(values) -> float:
    """Standard deviation of the values that are neither None nor NaN (NaN when none is)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[~np.isnan(v)]
    return float(v.std()) if len(v) else float("nan")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
