"""Paired bootstrap intervals: exact on degenerate inputs, paired where pairing matters, signed by direction."""

from __future__ import annotations

import numpy as np
import pytest

from gasp_core.tasks.map.task import MapTask
from gasp_core.tasks.report import compare, comparison_pairs
from gasp_core.tasks.stats import Bootstrap, BootstrapConfig, sample_weights, verdict
from gasp_core.tasks.trajectory.task import TrajectoryTask

CFG = BootstrapConfig(replicates=500, seed=0)


def _l2_runs(per_sample: np.ndarray) -> list[dict]:
    return [{"l2": per_sample[:, None].repeat(3, 1)}]


def test_identical_inits_give_a_zero_interval():
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 1.0, 40)
    boot = Bootstrap(np.arange(40), CFG)
    d = boot.difference(_l2_runs(errors), _l2_runs(errors), TrajectoryTask.main_from_stats, higher_is_better=False)
    assert d["difference"] == 0.0 and d["low"] == 0.0 and d["high"] == 0.0 and d["verdict"] == "inconclusive"


def test_pairing_detects_a_small_consistent_gain_hidden_by_sample_variance():
    rng = np.random.default_rng(1)
    hard = rng.gamma(1.0, 3.0, 60)  # samples differ a lot in difficulty
    a, b = hard - 0.05, hard  # a is 5 cm better on every sample
    boot = Bootstrap(np.arange(60), CFG)
    fn = TrajectoryTask.main_from_stats
    d = boot.difference(_l2_runs(a), _l2_runs(b), fn, higher_is_better=False)
    assert d["difference"] == pytest.approx(0.05) and d["low"] == pytest.approx(0.05) and d["verdict"] == "better"
    assert boot.difference(_l2_runs(b), _l2_runs(a), fn, higher_is_better=False)["verdict"] == "worse"
    # each alone has an interval far wider than the gain: unpaired intervals would overlap
    ia, ib = boot.interval(_l2_runs(a), fn), boot.interval(_l2_runs(b), fn)
    assert ia["high"] > ib["low"] and ia["low"] < ia["estimate"] < ia["high"]


def test_run_variance_widens_the_interval():
    hard = np.ones(30)
    boot = Bootstrap(np.arange(30), CFG)
    fn = TrajectoryTask.main_from_stats
    one = boot.difference(_l2_runs(hard * 0.9), _l2_runs(hard), fn, higher_is_better=False)
    # two runs of a: one far better, one far worse; on average still 0.1 better
    runs = _l2_runs(hard * 0.4) + _l2_runs(hard * 1.4)
    two = boot.difference(runs, _l2_runs(hard) * 2, fn, higher_is_better=False)
    assert one["verdict"] == "better" and two["verdict"] == "inconclusive"
    assert two["difference"] == pytest.approx(one["difference"])


def test_iou_is_pooled_over_resampled_samples():
    counts = np.array([[[1, 10]] * 3, [[9, 10]] * 3])  # (2 samples, 3 layers, inter/union)
    assert MapTask.main_from_stats({"iou_counts": counts.sum(0)[None]}, np.array([2.0]))[0] == pytest.approx(0.5)
    w = sample_weights(np.array([0, 0, 1, 1]), 200, np.random.default_rng(0))
    assert set(np.unique(w[:, 0] - w[:, 1])) == {0.0}  # a log bootstrap draws a log's samples together
    assert verdict(0.1, 0.2) == "better" and verdict(-0.2, -0.1) == "worse" and verdict(-0.1, 0.1) == "inconclusive"


def test_compare_names_the_papers_pairs_and_the_baseline():
    rng = np.random.default_rng(2)
    base = rng.gamma(2.0, 1.0, 20)
    stats = {
        init: {"low": {f"pretrain_{p}/seed_0": {"l2": (base * f)[:, None].repeat(3, 1)} for p in (0, 1)}}
        for init, f in (("scratch", 1.2), ("uno", 1.0), ("gasp", 0.8))
    }
    stats["baseline"] = {"-": {"-": {"l2": base[:, None].repeat(3, 1)}}}
    res = compare(
        "trajectory", stats, np.arange(20), ["scratch", "uno", "gasp"], ["low"], TrajectoryTask.main_from_stats, CFG
    )
    assert comparison_pairs(["scratch", "uno", "gasp"]) == [("gasp", "uno"), ("uno", "scratch")]
    assert (
        res["low"]["pairs"]["gasp>uno"]["verdict"] == "better"
        and res["low"]["pairs"]["uno>scratch"]["verdict"] == "better"
    )
    assert res["low"]["vs_baseline"]["scratch"]["verdict"] == "worse"
    assert res["low"]["vs_baseline"]["uno"]["verdict"] == "inconclusive"
    assert ("uno", "scratch") in comparison_pairs(["scratch", "uno", "uno_enhanced", "gasp"])


def test_gasp_variants_are_compared_with_gasp_and_uno_never_with_each_other():
    inits = ["scratch", "uno", "uno_enhanced", "gasp", "gasp_oracle", "gasp_no_rotation", "gasp_no_missing_rays"]
    pairs = comparison_pairs(inits)
    ladder = [("gasp", "uno_enhanced"), ("uno_enhanced", "uno"), ("uno", "scratch"), ("gasp", "uno")]
    variants = [(v, base) for v in inits[4:] for base in ("gasp", "uno")]
    assert pairs == ladder + variants
    assert comparison_pairs(["scratch", "uno", "gasp"]) == [("gasp", "uno"), ("uno", "scratch")]


def test_percentile_interval_has_the_asked_level_and_refuses_mostly_undefined_replicates():
    from gasp_core.tasks.stats import _percentiles

    values = np.arange(1001.0)  # quantiles are exact on this grid
    assert _percentiles(values, 0.9) == pytest.approx((50.0, 950.0))
    assert _percentiles(values, 0.95) == pytest.approx((25.0, 975.0))
    half = np.r_[np.arange(10.0), np.full(10, np.nan)]  # exactly half undefined: still an interval
    assert _percentiles(half, 0.5) == pytest.approx((2.25, 6.75))
    mostly = np.r_[np.arange(9.0), np.full(11, np.nan)]  # more than half undefined (no positives drawn): none
    assert all(np.isnan(_percentiles(mostly, 0.9))) and all(np.isnan(_percentiles(np.full(5, np.nan), 0.9)))


def test_bootstrap_config_rejects_what_it_cannot_do():
    for bad in ({"unit": "frame"}, {"level": 0.5}, {"level": 1.0}, {"level": 95}):
        with pytest.raises(ValueError):
            BootstrapConfig(**bad)
    assert BootstrapConfig(level=0.51).level == 0.51 and BootstrapConfig(unit="log").unit == "log"
