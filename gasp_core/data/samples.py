"""Training samples: reference times t0 with their past input sweeps and future horizon.

Targets and models read the same :class:`SceneConfig` (the ``scene`` section of params.yaml), so the
region labels are made for is the region the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneConfig:
    extent_m: tuple[float, float, float, float, float, float] = (-40.0, 40.0, -40.0, 40.0, -3.0, 5.0)
    """Region around the ego vehicle at t0, in its frame: (x_min, x_max, y_min, y_max, z_min, z_max)."""
    past_sweeps: int = 5
    """Input sweeps up to and including t0."""
    horizon_s: float = 3.0
    """Future span that targets cover, from t0."""

    @property
    def box_min(self) -> np.ndarray:
        return np.array(self.extent_m[0::2], dtype=np.float64)

    @property
    def box_max(self) -> np.ndarray:
        return np.array(self.extent_m[1::2], dtype=np.float64)


@dataclass
class Sample:
    t0_ns: int
    index: int  # index of the t0 sweep in the log's sweep list
    past_ns: list[int]  # past_sweeps timestamps, oldest first, ending at t0
    future_ns: list[int]  # sweeps within (t0, t0 + horizon]


def select_samples(sweep_ns: np.ndarray, scene: SceneConfig, stride: int, tol_s: float = 0.02) -> list[Sample]:
    """Every ``stride``-th sweep with ``past_sweeps`` of history and a full horizon of future sweeps.

    Real sweeps are not exactly periodic (AV2: 100 +- 1 ms), so the horizon's end is matched within ``tol_s``.
    """
    sweep_ns = np.asarray(sweep_ns, dtype=np.int64)
    horizon_ns = int(round(scene.horizon_s * 1e9))
    tol_ns = int(tol_s * 1e9)
    out = []
    for i in range(scene.past_sweeps - 1, len(sweep_ns), stride):
        t0 = int(sweep_ns[i])
        if sweep_ns[-1] < t0 + horizon_ns - tol_ns:
            break
        future = sweep_ns[(sweep_ns > t0) & (sweep_ns <= t0 + horizon_ns + tol_ns)]
        out.append(
            Sample(t0, i, [int(t) for t in sweep_ns[i - scene.past_sweeps + 1 : i + 1]], [int(t) for t in future])
        )
    return out
