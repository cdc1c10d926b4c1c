"""4D occupancy labels beside the occupancy stage's queries: the returned future rays that depth rendering is scored
on, and the t0 sweep's last firing time (queries at or before it reconstruct the input rather than forecast)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gasp_core.data.samples import Sample
from gasp_core.data.store import StoredLog
from gasp_core.targets.occupancy import sample_rays
from gasp_core.tasks.label_builder import LabelBuilder

RAY_KEYS = ("ray_origin", "ray_dir", "ray_t", "ray_range", "ray_sample")


def input_end_s(log_: StoredLog, sample: Sample) -> float:
    """The last firing time of the t0 sweep (the newest input), in s after t0, as the stored float16 query times
    round it: 4D-occupancy queries at or before it reconstruct the input rather than forecast."""
    offsets = log_.sweep(sample.t0_ns).offset_ns
    return float(np.float16(float(offsets.max()) / 1e9 if len(offsets) else 0.0))


class OccupancyLabels(LabelBuilder):
    """``ray_origin``, ``ray_dir``, ``ray_t``, ``ray_range``, ``ray_sample``: up to ``render_rays`` returned rays per
    sample of the future sweeps (after t0's, the newest input) whose return lies inside the extent, for depth
    rendering (evaluation logs only); ``occ_t_min``: (S,) the t0 sweep's last firing time."""

    keys = (*RAY_KEYS, "occ_t_min")
    stacked = frozenset(("occ_t_min",))

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.future_only = replace(ctx.occ_cfg.occupancy, include_present=False)  # the t0 sweep is the model's input

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        ctx = self.ctx
        out = {"occ_t_min": np.float32(input_end_s(ctx.log, sample))}
        if not ctx.evaluation:
            return out
        returned, _ = sample_rays(ctx.log, sample, self.future_only, ctx.cache)
        ok = np.flatnonzero(
            np.all((returned.endpoints >= ctx.scene.box_min) & (returned.endpoints <= ctx.scene.box_max), axis=1)
        )
        pick = ctx.rng.choice(ok, min(len(ok), ctx.cfg.render_rays), replace=False)
        return {
            **out,
            "ray_origin": returned.origins[pick].astype(np.float32),
            "ray_dir": returned.dirs[pick].astype(np.float32),
            "ray_t": returned.t_s[pick].astype(np.float32),
            "ray_range": returned.range_m[pick].astype(np.float32),
            "ray_sample": np.full(len(pick), index, np.int32),
        }

    def finish(self, per_sample):
        if not self.ctx.evaluation:
            per_sample.update(
                ray_origin=[np.zeros((0, 3), np.float32)],
                ray_dir=[np.zeros((0, 3), np.float32)],
                ray_t=[np.zeros(0, np.float32)],
                ray_range=[np.zeros(0, np.float32)],
                ray_sample=[np.zeros(0, np.int32)],
            )
        return super().finish(per_sample)

    @staticmethod
    def log_metrics(arrays):
        return {"render_rays": int(len(arrays["ray_t"]))}

    @staticmethod
    def stage_metrics(per_log):
        return {"render_rays": sum(r["render_rays"] for r in per_log)}
