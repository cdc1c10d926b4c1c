"""The downstream tasks: one line per task class, and what the pipeline reads off them.

Everything that differs between tasks is an attribute or method of its :class:`~gasp_core.tasks.base.Task` subclass;
the tables the stages, the report and ``dvc.yaml`` need (the task list and its order, the main metrics, the report's
titles and secondary columns, the figures, the labels each task builds, the precision-recall plots) are read from
:data:`TASK_CLASSES` here, never written out a second time. The task labels stage runs the builders without
importing the task classes (their heads): :data:`gasp_core.tasks.build.LABEL_BUILDERS` lists them in the order they
draw from a log's random stream, and ``tests/tasks/test_registry.py`` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gasp_core.data.samples import SceneConfig
from gasp_core.tasks import build
from gasp_core.tasks.base import Task
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig
from gasp_core.tasks.forecast.task import ForecastTask
from gasp_core.tasks.label_builder import LabelBuilder
from gasp_core.tasks.map.task import MapTask
from gasp_core.tasks.occupancy.task import OccupancyTask
from gasp_core.tasks.semantic_occupancy.task import SemanticOccupancyTask
from gasp_core.tasks.trajectory.task import TrajectoryTask

TASK_CLASSES: dict[str, type[Task]] = {
    c.name: c
    for c in (
        ForecastTask,
        OccupancyTask,
        SemanticOccupancyTask,
        MapTask,
        TrajectoryTask,
    )
}
"""Task name -> class, in the report's order (BEV semantic forecasting, 4D occupancy, 4D semantic occupancy, map
segmentation, ego trajectory)."""


def task_names() -> tuple[str, ...]:
    return tuple(TASK_CLASSES)


def main_metrics() -> dict[str, tuple[str, str]]:
    """Each task's headline metric and which direction is better: the anchors' protocols (UnO's vehicle AP for BEV
    forecasting; AP of future lidar queries for 4D occupancy; mIoU over crossings, lane dividers and road boundaries
    for maps; average L2 at 1 / 2 / 3 s with odometry for the trajectory)."""
    return {name: c.main_metric for name, c in TASK_CLASSES.items()}


def titles() -> dict[str, str]:
    return {name: c.title for name, c in TASK_CLASSES.items()}


def secondary() -> dict[str, tuple[str, ...]]:
    """Each task's columns of the report's secondary table."""
    return {name: c.secondary for name, c in TASK_CLASSES.items()}


def figures() -> dict[str, Callable[..., Path]]:
    """Each task with a qualitative figure -> the function that draws it, in the report's order of figures."""
    ranked = sorted(TASK_CLASSES.items(), key=lambda kv: kv[1].figure_rank)
    return {name: c.figure for name, c in ranked if c.figure is not None}


def label_builders() -> dict[str, tuple[type[LabelBuilder], ...]]:
    """Each task -> the builders of the labels it reads."""
    return {name: c.label_builders for name, c in TASK_CLASSES.items()}


def pr_plots(inits: list[str]) -> list[dict]:
    """``dvc.yaml``'s ``plots:`` entries: per task with AP histograms, the precision-recall curve of each init (and of
    the non-learned baseline where the task has one) that ``evaluate@<task>`` writes as ``pr_<init>.csv``."""
    plots = []
    for name, c in TASK_CLASSES.items():
        if c.pr_curve is None:
            continue
        curves = (["baseline"] if c.has_baseline() else []) + list(inits)
        root = f"data/eval/{name}"
        plots.append(
            {
                f"{root}/pr_curve ({c.pr_curve})": {
                    "template": "linear",
                    "x": "recall",
                    "y": {f"{root}/pr_{i}.csv": "precision" for i in curves},
                }
            }
        )
    return plots


def task_class(name: str) -> type[Task]:
    if name not in TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASK_CLASSES)}")
    return TASK_CLASSES[name]


def make_task(name: str, labels: TaskLabels, occupancy_dir: Path, scene: SceneConfig, cfg: FinetuneConfig) -> Task:
    return task_class(name)(labels, occupancy_dir, scene, cfg)


def register(cls: type[Task]) -> None:
    """Add a task (after the built-in ones) and its labels builders (after every other builder, so the random
    streams of the others are drawn as before)."""
    if cls.name in TASK_CLASSES:
        raise ValueError(f"task {cls.name!r} is already registered ({TASK_CLASSES[cls.name].__qualname__})")
    TASK_CLASSES[cls.name] = cls
    build.LABEL_BUILDERS.extend(b for b in cls.label_builders if b not in build.LABEL_BUILDERS)


@contextmanager
def registered(cls: type[Task]) -> Iterator[type[Task]]:
    """:func:`register` ``cls`` for the block, then remove it and its builders again."""
    builders = list(build.LABEL_BUILDERS)
    register(cls)
    try:
        yield cls
    finally:
        del TASK_CLASSES[cls.name]
        build.LABEL_BUILDERS[:] = builders
