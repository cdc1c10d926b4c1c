"""What every task's labels builder is: per log, the arrays of each sample (and of the log), stored in the log's npz.

:func:`gasp_core.tasks.build.label_log` gives every builder of :data:`gasp_core.tasks.build.LABEL_BUILDERS` one
:class:`LogContext` per log and asks each, sample by sample and in that order, for its arrays: the builders share
the log's random stream, so their order is the order of its draws."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from gasp_core.config import ConfigError
from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.store import StoredLog
from gasp_core.models.config import VoxelizerConfig
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig
from gasp_core.tasks.config import TaskLabelsConfig


@dataclass
class LogContext:
    """One log being labelled: its stored samples, the settings, the log's random stream and its occupancy queries."""

    log: StoredLog
    samples: list[Sample]
    occupancy_dir: Path
    scene: SceneConfig
    vox: VoxelizerConfig
    occ_cfg: OccupancyLabelsConfig
    cfg: TaskLabelsConfig
    rng: np.random.Generator
    """The log's one random stream, drawn by the builders in their order."""
    evaluation: bool = True
    """Whether evaluation-only labels are built (training logs skip them: 4D occupancy's depth-rendering rays)."""
    cache: dict = field(default_factory=dict)
    """Scratch space the builders share within the log (the occupancy stage's rays, by sweep)."""
    _reader: ipc.RecordBatchFileReader | None = None

    @property
    def occupancy_queries(self) -> ipc.RecordBatchFileReader:
        """The occupancy stage's stored queries of the log (one record batch per sample)."""
        if self._reader is None:
            path = Path(self.occupancy_dir) / self.log.log_id / schema.OCCUPANCY_FILE
            self._reader = ipc.open_file(pa.memory_map(str(path)))
        return self._reader


class LabelBuilder(ABC):
    """One task's labels: per-sample arrays under ``keys`` (stacked along a new sample axis, or, for rows that carry
    their sample index, concatenated), and arrays of the whole log under ``log_keys``."""

    keys: ClassVar[tuple[str, ...]]
    """The per-sample arrays, in the order they are stored."""
    stacked: ClassVar[frozenset[str]] = frozenset()
    """Those of ``keys`` with one entry per sample (S, ...); the others are rows concatenated over the samples."""
    log_keys: ClassVar[tuple[str, ...]] = ()
    """Arrays of the whole log (stored after the per-sample ones and ``t0_ns``)."""
    packed: ClassVar[dict[str, str]] = {}
    """Keys stored as packed bits -> the manifest entry holding their unpacked per-sample shape."""

    def __init__(self, ctx: LogContext) -> None:
        self.ctx = ctx

    @classmethod
    def check(cls, scene: SceneConfig, cfg: TaskLabelsConfig) -> None:
        """Raise a ConfigError naming the key when the settings cannot be built (none by default)."""
        return None

    @classmethod
    def manifest(cls, scene: SceneConfig, vox: VoxelizerConfig, cfg: TaskLabelsConfig) -> dict:
        """Entries of the labels' manifest (the shapes named in ``packed``, class names)."""
        return {}

    @abstractmethod
    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        """The arrays of sample ``index`` (its rows, for the concatenated keys); a key left out adds nothing."""

    def finish(self, per_sample: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        """The log's arrays under ``keys`` from the samples' arrays."""
        return {k: np.stack(v) if k in self.stacked else np.concatenate(v) for k, v in per_sample.items()}

    def log_arrays(self) -> dict[str, np.ndarray]:
        """The arrays under ``log_keys``."""
        return {}

    @staticmethod
    def log_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-log figures of the stage metrics, from the log's arrays."""
        return {}

    @staticmethod
    def stage_metrics(per_log: list[dict[str, float]]) -> dict[str, float]:
        """The stage metrics over the logs' :meth:`log_metrics`."""
        return {}


def check_times(scene: SceneConfig, cfg: TaskLabelsConfig, key: str) -> None:
    """``cfg.<key>`` (label times in s after t0) must lie within the scene's horizon."""
    times = getattr(cfg, key)
    if not times or min(times) < 0 or max(times) > scene.horizon_s + 1e-9:
        raise ConfigError(f"task_labels.{key} = {times}: times must lie in [0, scene.horizon_s = {scene.horizon_s}]")
