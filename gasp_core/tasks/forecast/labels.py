"""BEV forecasting labels: which cells an object of each class covers at each forecast time, in the t0 frame."""

from __future__ import annotations

import numpy as np

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.schema import UnifiedCategory
from gasp_core.data.store import StoredLog
from gasp_core.models.config import VoxelizerConfig
from gasp_core.tasks.bev import BevGrid, boxes_mask
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.label_builder import LabelBuilder, check_times
from gasp_core.tasks.labels import objects_at

FORECAST_CLASSES = (UnifiedCategory.VEHICLE, UnifiedCategory.PEDESTRIAN, UnifiedCategory.CYCLIST)


def forecast_grid(scene: SceneConfig, cfg: TaskLabelsConfig) -> BevGrid:
    return BevGrid(tuple(scene.extent_m[:4]), cfg.bev_resolution_m)


def forecast_labels(
    log: StoredLog,
    t0_ns: int,
    times_s: np.ndarray,
    grid: BevGrid,
    classes: tuple[UnifiedCategory, ...] = FORECAST_CLASSES,
) -> np.ndarray:
    """(T, C, H, W) bool: cells covered by an object of each class at each future time."""
    out = np.zeros((len(times_s), len(classes), *grid.shape), bool)
    for i, t in enumerate(times_s):
        obj = objects_at(log, t0_ns, t0_ns + int(round(t * 1e9)))
        for j, cls in enumerate(classes):
            m = obj.category == cls.value
            if m.any():
                out[i, j] = boxes_mask(grid, obj.center[m, :2], obj.yaw[m], obj.size_lwh[m, 0], obj.size_lwh[m, 1])
    return out


class ForecastLabels(LabelBuilder):
    """``forecast``: (S, T, 3, Hf, Wf) packed bits, vehicle / pedestrian / cyclist cover at ``forecast_times_s``."""

    keys = ("forecast",)
    stacked = frozenset(keys)
    packed = {"forecast": "forecast_shape"}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        grid = forecast_grid(ctx.scene, ctx.cfg)
        self.fine = BevGrid(grid.extent_m, grid.resolution_m / 2)
        self.times = np.asarray(ctx.cfg.forecast_times_s, float)

    @classmethod
    def check(cls, scene: SceneConfig, cfg: TaskLabelsConfig) -> None:
        check_times(scene, cfg, "forecast_times_s")

    @classmethod
    def manifest(cls, scene: SceneConfig, vox: VoxelizerConfig, cfg: TaskLabelsConfig) -> dict:
        return {
            "forecast_shape": [len(cfg.forecast_times_s), len(FORECAST_CLASSES), *forecast_grid(scene, cfg).shape],
            "forecast_classes": [c.label for c in FORECAST_CLASSES],
        }

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        f = forecast_labels(self.ctx.log, sample.t0_ns, self.times, self.fine)  # (T, 3, 2H, 2W) -> any-cover max-pool
        f = f.reshape(*f.shape[:2], f.shape[2] // 2, 2, f.shape[3] // 2, 2).any(axis=(3, 5))  # to (T, 3, H, W)
        return {"forecast": np.packbits(f)}

    @staticmethod
    def log_metrics(arrays):
        return {"forecast_positive_fraction": float(np.unpackbits(arrays["forecast"]).mean())}

    @staticmethod
    def stage_metrics(per_log):
        return {
            "forecast_positive_fraction": round(float(np.mean([r["forecast_positive_fraction"] for r in per_log])), 5)
        }
