"""Configs of the downstream side: log splits, task labels, fine-tuning and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gasp_core.config import ConfigError, from_dict
from gasp_core.models.config import DecoderConfig

TASKS = ("forecast", "occupancy", "semantic_occupancy", "map", "trajectory")
"""The names ``finetune.tasks`` may list, in the report's order: those of :data:`gasp_core.tasks.registry.TASK_CLASSES`
(``tests/tasks/test_registry.py`` checks that they agree), spelled out here so that reading a config (as the
pre-training stage does for its splits) imports no task class."""


@dataclass
class SplitsConfig:
    """Log ids of each split. Pre-training (and the self-supervised teacher and the DINO PCA) reads the pre-training
    pool, ``train`` + ``pool``: no labels of either are read there. Fine-tuning labels come from ``train`` (a budget's
    fraction of it), ``val`` is for model selection and ``test`` is read only by ``evaluate``. No log is in two
    splits, so pre-training never reads a validation or test log."""

    train: list[str]
    val: list[str]
    test: list[str]
    pool: list[str] = field(default_factory=list)
    """Unlabelled logs read by pre-training only (the large pool self-supervision exists for); no task labels are
    built for them."""

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ("train", "val", "test", "pool"):
            ids = getattr(self, name)
            if not ids and name != "pool":
                raise ConfigError(f"splits.{name} is empty")
            for log_id in ids:
                if log_id in seen:
                    raise ConfigError(f"splits: log {log_id} is in both {seen[log_id]} and {name}")
                seen[log_id] = name

    def all(self) -> list[str]:
        """The labelled logs: those task labels are built for."""
        return [*self.train, *self.val, *self.test]

    def pretrain_logs(self) -> list[str]:
        """The pre-training pool: the training logs and the unlabelled pool, never a validation or test log."""
        return [*self.train, *self.pool]


@dataclass
class TaskLabelsConfig:
    bev_resolution_m: float = 1.0
    """Cell size of the forecasting raster (boxes are drawn at half this and max-pooled, so small objects count)."""
    forecast_times_s: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0])
    """Future times of the BEV forecasts (0 is t0 itself)."""
    map_resolution_m: float = 0.625
    """Cell size of the map raster."""
    map_line_width_m: float = 1.0
    """Lane dividers and road boundaries are drawn this wide."""
    waypoint_times_s: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    """Ego waypoint times after t0."""
    semantic_from_occupancy: int = 4000
    """Semantic-occupancy queries taken from the stored occupancy queries (occupied and free) per sample."""
    semantic_in_boxes: int = 2000
    """Extra semantic-occupancy queries drawn inside object boxes per sample (rare classes get examples)."""
    render_rays: int = 64
    """Returned future rays per sample kept for the depth-rendering evaluation of 4D occupancy."""
    seed: int = 0


@dataclass
class FinetuneConfig:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    """Tasks dvc.yaml fine-tunes (its matrix)."""
    inits: list[str] = field(default_factory=lambda: ["scratch", "uno", "gasp"])
    """Encoder initialisations: pre-training variants (``scratch`` is the untrained, seeded initialisation)."""
    budgets: dict[str, float] = field(default_factory=lambda: {"low": 0.25, "full": 1.0})
    """Label budgets: name -> fraction of the training logs whose labels are used (at least one log)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Fine-tuning seeds per budget (head initialisation, label-log choice and batches)."""
    encoder: Literal["frozen", "full"] = "frozen"
    """``frozen``: only the head trains on the encoder's fixed BEV features (computed once); ``full``: the
    encoder trains too, at ``encoder_lr``."""
    head: DecoderConfig = field(default_factory=DecoderConfig)
    """The implicit heads' decoder (as pre-training's); ``hidden`` is also the trajectory head's width."""
    steps: int = 60
    """Optimizer steps per run."""
    batch_size: int = 4
    lr: float = 3e-3
    """Head learning rate (AdamW, warm-up + cosine)."""
    encoder_lr: float = 3e-4
    """Encoder learning rate when ``encoder: full`` (for an initialisation without candidates in ``encoder_lrs``)."""
    encoder_lrs: dict[str, list[float]] = field(default_factory=dict)
    """Initialisation -> candidate encoder learning rates (``encoder: full``): per label budget, the first
    pre-training and fine-tuning seed trains once with each, and the one with the best validation selection metric
    (ties to the earlier) trains every run of that budget. Validation only: test never chooses."""
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    queries: int = 1024
    """Queries per sample and step for the implicit heads."""
    zero_shot_only: list[str] = field(default_factory=list)
    """Tasks scored only zero-shot, by each pre-trained model's own decoder (4D occupancy): no head is trained for them
    (their finetune stages write empty run folders). For a study that cannot afford the heads of every task."""
    val_every: dict[str, int] = field(default_factory=lambda: {"trajectory": 10})
    """Task -> steps between validation scores for model selection (the best validation state is kept; a task not
    listed keeps its last step)."""
    device: str = "auto"


def finetune_config_from_dict(data, strict: bool = False) -> FinetuneConfig:
    cfg = from_dict(FinetuneConfig, data, "finetune", strict)
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"finetune.tasks: unknown {unknown}; choose from {list(TASKS)}")
    for name, frac in cfg.budgets.items():
        if not 0.0 < float(frac) <= 1.0:
            raise ConfigError(f"finetune.budgets.{name}: {frac} is not a fraction in (0, 1]")
    if not cfg.seeds:
        raise ConfigError("finetune.seeds is empty")
    if set(cfg.zero_shot_only) - set(cfg.tasks):
        raise ConfigError(f"finetune.zero_shot_only: {cfg.zero_shot_only} must be among finetune.tasks {cfg.tasks}")
    bad_lrs = {i: v for i, v in cfg.encoder_lrs.items() if not v or any(float(x) <= 0 for x in v)}
    if bad_lrs:
        raise ConfigError(f"finetune.encoder_lrs: {bad_lrs} is not init -> a non-empty list of positive rates")
    bad = {t: n for t, n in cfg.val_every.items() if t not in TASKS or int(n) < 0}
    if bad:
        raise ConfigError(f"finetune.val_every: {bad} is not task -> steps >= 0 (tasks: {list(TASKS)})")
    return cfg
