"""Paired bootstrap confidence intervals for the downstream comparison.

Every evaluation stores, per run (pre-training seed x fine-tuning seed) and per test sample, the *statistics* its
main metric is built from (AP score histograms, IoU counts, L2 errors; see ``Task.main_from_stats``). A bootstrap
replicate draws test samples (or whole logs) with replacement, and runs with replacement; the metric of a run on
a replicate is computed from the weighted sums of its per-sample statistics, so AP and IoU stay pooled metrics
rather than averages of per-sample scores. Two initialisations are compared on the *same* replicate (paired), so
the interval of their difference is free of the sample-to-sample variance they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

StatFn = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]
"""(summed statistics with a leading replicate axis, total sample weight per replicate) -> metric per replicate."""


@dataclass
class BootstrapConfig:
    replicates: int = 2000
    """Bootstrap replicates."""
    unit: str = "sample"
    """What is resampled among the test data: ``sample`` (each t0) or ``log`` (whole test logs: wider, honest
    intervals when there are many test logs; with two, nearly useless)."""
    level: float = 0.95
    """Confidence level of the intervals (percentile bootstrap)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unit not in ("sample", "log"):
            raise ValueError(f"bootstrap unit {self.unit!r}: choose sample or log")
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"bootstrap level {self.level}: must lie in (0.5, 1)")


def sample_weights(groups: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, N) how often each sample is drawn when the distinct values of ``groups`` (N,) are resampled
    with replacement (groups = sample indices for a sample bootstrap, log indices for a log bootstrap)."""
    _, inverse = np.unique(groups, return_inverse=True)
    k = inverse.max() + 1
    draws = rng.integers(k, size=(replicates, k))
    counts = np.stack([np.bincount(d, minlength=k) for d in draws])  # (B, k)
    return counts[:, inverse].astype(np.float64)


def _metric(stats: dict[str, np.ndarray], weights: np.ndarray, fn: StatFn) -> np.ndarray:
    summed = {k: np.tensordot(weights, v.astype(np.float64), axes=(1, 0)) for k, v in stats.items()}
    return np.asarray(fn(summed, weights.sum(1)), np.float64)


class Bootstrap:
    """Replicates shared by every initialisation of one task and budget, so that differences are paired: the same
    test-sample weights for all, and the same run draws for all with the same number of runs (run k of each
    shares its pre-training and fine-tuning seed indices)."""

    def __init__(self, groups: np.ndarray, cfg: BootstrapConfig, chunk: int = 250) -> None:
        self.cfg, self.chunk = cfg, chunk
        self.rng = np.random.default_rng(cfg.seed)
        self.weights = sample_weights(groups, cfg.replicates, self.rng)
        self.n = len(groups)
        self._draws: dict[int, np.ndarray] = {}
        self._memo: dict[int, tuple[list, np.ndarray]] = {}

    def _run_draws(self, runs: int) -> np.ndarray:
        if runs not in self._draws:
            self._draws[runs] = np.random.default_rng([self.cfg.seed, runs]).integers(
                runs, size=(self.cfg.replicates, runs)
            )
        return self._draws[runs]

    def replicates(self, runs: list[dict[str, np.ndarray]], fn: StatFn) -> np.ndarray:
        """(replicates,) the metric averaged over resampled runs, on resampled test data (memoised per runs list)."""
        key = id(runs)
        if key not in self._memo or self._memo[key][0] is not runs:
            self._memo[key] = (runs, self._replicates(runs, fn))
        return self._memo[key][1]

    def _replicates(self, runs: list[dict[str, np.ndarray]], fn: StatFn) -> np.ndarray:
        per_run = np.empty((len(self.weights), len(runs)))
        for r, stats in enumerate(runs):
            for i in range(0, len(self.weights), self.chunk):
                per_run[i : i + self.chunk, r] = _metric(stats, self.weights[i : i + self.chunk], fn)
        with np.errstate(all="ignore"):
            return np.nanmean(np.take_along_axis(per_run, self._run_draws(len(runs)), axis=1), axis=1)

    def point(self, runs: list[dict[str, np.ndarray]], fn: StatFn) -> float:
        """The metric on all test data, averaged over runs."""
        with np.errstate(all="ignore"):
            return float(np.nanmean([_metric(stats, np.ones((1, self.n)), fn)[0] for stats in runs]))

    def interval(self, runs: list[dict[str, np.ndarray]], fn: StatFn) -> dict:
        """Estimate and percentile interval of one initialisation's metric."""
        lo, hi = _percentiles(self.replicates(runs, fn), self.cfg.level)
        return {"estimate": self.point(runs, fn), "low": lo, "high": hi}

    def difference(
        self,
        runs_a: list[dict[str, np.ndarray]],
        runs_b: list[dict[str, np.ndarray]],
        fn: StatFn,
        higher_is_better: bool = True,
    ) -> dict:
        """Interval of a - b, signed so that positive means ``a`` is better, and its :func:`verdict`."""
        sign = 1.0 if higher_is_better else -1.0
        lo, hi = _percentiles(sign * (self.replicates(runs_a, fn) - self.replicates(runs_b, fn)), self.cfg.level)
        diff = sign * (self.point(runs_a, fn) - self.point(runs_b, fn))
        return {"difference": diff, "low": lo, "high": hi, "verdict": verdict(lo, hi)}


def verdict(low: float, high: float) -> str:
    """``better`` when the interval of the (signed) difference lies above 0, ``worse`` below, else ``inconclusive``."""
    if np.isnan(low) or np.isnan(high):
        return "n/a"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "inconclusive"


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; nan when more than half of the replicates are undefined (no positives drawn)."""
    v = values[~np.isnan(values)]
    if not len(v) or len(v) < 0.5 * len(values):
        return float("nan"), float("nan")
    a = (1.0 - level) / 2
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)
