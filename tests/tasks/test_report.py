"""The report: formatting of missing values, missing inits, single runs, lower-is-better verdicts and the README."""

from __future__ import annotations

import numpy as np

from gasp_core.tasks.report import NO_VERDICT, _fmt_ci, compare, comparison_pairs, write_report
from gasp_core.tasks.stats import BootstrapConfig
from gasp_core.tasks.trajectory.task import TrajectoryTask

CFG = BootstrapConfig(replicates=300, seed=0)
N = 24


def _stats(factors: dict[str, float], runs: int = 1, baseline: bool = True, pretrain: int = 2) -> dict:
    """Per-sample L2 errors (N, 3) of each init, ``factors[init]`` times a shared per-sample difficulty, for ``runs``
    fine-tuning seeds under each of ``pretrain`` pre-training seeds."""
    base = np.random.default_rng(0).gamma(2.0, 1.0, N)
    stats = {
        i: {
            "low": {
                f"pretrain_{p}/seed_{r}": {"l2": (base * f * (1 + 0.01 * r + 0.005 * p))[:, None].repeat(3, 1)}
                for p in range(pretrain)
                for r in range(runs)
            }
        }
        for i, f in factors.items()
    }
    if baseline:
        stats["baseline"] = {"-": {"-": {"l2": base[:, None].repeat(3, 1)}}}
    return stats


def _compare(stats, inits):
    return compare("trajectory", stats, np.arange(N), inits, ["low"], TrajectoryTask.main_from_stats, CFG)


def test_fmt_ci_with_missing_values():
    assert _fmt_ci(None) == "n/a" and _fmt_ci({}) == "n/a"
    assert _fmt_ci({"estimate": None, "low": np.nan, "high": np.nan}) == "n/a"
    assert _fmt_ci({"estimate": float("nan"), "low": 0.1, "high": 0.2}) == "n/a"
    assert _fmt_ci({"estimate": 0.5, "low": np.nan, "high": np.nan}) == "0.500"  # a point without an interval
    assert _fmt_ci({"estimate": 0.5, "low": 0.25, "high": 0.75}) == "0.500 [0.250, 0.750]"
    assert _fmt_ci({"difference": 0.1234, "low": 0.1, "high": 0.15}, signed=True) == "+0.123 [+0.100, +0.150]"
    assert _fmt_ci({"difference": -0.004, "low": -0.006, "high": -0.002}, signed=True) == "-0.004 [-0.006, -0.002]"


def test_lower_is_better_gives_positive_differences_and_better_verdicts():
    """Trajectory L2: lower is better. GASP's errors are 20 % below UnO's on every sample: GASP is *better*, and the
    difference (first minus second, signed so positive = better) is positive."""
    res = _compare(_stats({"scratch": 1.2, "uno": 1.0, "gasp": 0.8}), ["scratch", "uno", "gasp"])["low"]
    for pair in ("gasp>uno", "uno>scratch"):
        d = res["pairs"][pair]
        assert d["verdict"] == "better" and d["difference"] > 0 and d["low"] > 0, pair
    assert res["vs_baseline"]["gasp"]["verdict"] == "better" and res["vs_baseline"]["scratch"]["verdict"] == "worse"
    assert res["interval"]["gasp"]["estimate"] < res["interval"]["uno"]["estimate"]  # L2 itself: lower
    worse = _compare(_stats({"uno": 1.0, "gasp": 1.25}), ["uno", "gasp"])["low"]["pairs"]["gasp>uno"]
    assert worse["verdict"] == "worse" and worse["difference"] < 0 and worse["high"] < 0


def test_missing_init_and_single_run():
    inits = ["scratch", "uno", "gasp"]
    res = _compare(_stats({"scratch": 1.2, "gasp": 0.8}), inits)["low"]  # no UnO runs at all
    assert set(res["interval"]) == {"scratch", "gasp"}
    assert res["pairs"] == {}  # both of the paper's pairs involve UnO: no difference is made up
    assert comparison_pairs(inits) == [("gasp", "uno"), ("uno", "scratch")]
    # one run (one seed) still gives intervals over resampled samples
    one = _compare(_stats({"uno": 1.0, "gasp": 0.8}, runs=1), ["uno", "gasp"])["low"]
    iv = one["interval"]["gasp"]
    assert np.isfinite(iv["low"]) and iv["low"] <= iv["estimate"] <= iv["high"]


def _eval_metrics(inits):
    mean = {"L2_avg": 1.0, "l2_1s": 0.5, "l2_2s": np.nan, "collision_3s": None}
    return {
        "trajectory": {
            "results": {i: {"low": {"mean": mean, "std": {"L2_avg": 0.1, "l2_1s": None}}} for i in inits},
            "baseline": {"L2_avg": 1.1},
        }
    }


def test_write_report_readme_has_verdicts_intervals_and_na(tmp_path):
    inits = ["scratch", "uno", "gasp"]
    comparisons = {"trajectory": _compare(_stats({"scratch": 1.2, "uno": 1.0, "gasp": 0.8}, runs=2), inits)}
    # a missing init's interval: drop UnO from the intervals
    comparisons["trajectory"]["low"]["interval"].pop("uno")
    summary = write_report(
        _eval_metrics(["scratch", "gasp"]),
        {},
        tmp_path / "report",
        inits,
        ["low"],
        comparisons,
        extras={"test samples": N},
        plot_csv=tmp_path / "plot.csv",
    )
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "**better**" in readme and "**worse**" in readme  # gasp > uno, scratch vs baseline
    row = next(line for line in readme.splitlines() if line.startswith("| Ego trajectory (L2 avg"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells[1] == "n/a"  # UnO: no interval
    for c in (cells[0], cells[2], cells[3]):  # scratch, GASP, baseline: estimate [low, high]
        assert c.count("[") == 1 and c.endswith("]") and ", " in c, c
        est, low, high = (float(v) for v in c.replace("[", "").replace("]", "").replace(",", "").split())
        assert low <= est <= high
    assert "↓" in row  # lower is better, and said so
    pairs_row = next(line for line in readme.splitlines() if line.startswith("| Ego trajectory | low |"))
    assert "[+" in pairs_row and "**better**" in pairs_row
    assert "n/a" in readme  # the nan / None secondary metrics
    csv = (tmp_path / "plot.csv").read_text().splitlines()
    assert csv[0] == "task,budget,init,value" and {r.split(",")[2] for r in csv[1:]} == {"scratch", "gasp"}
    assert summary["tasks"]["trajectory"]["better"] == "lower"
    assert (tmp_path / "report" / "summary.json").is_file() and (tmp_path / "report" / "radar.png").is_file()


def test_one_pretraining_seed_gives_no_verdict(tmp_path):
    """Pre-training variance decides GASP vs UnO and UnO vs scratch: with one pre-training seed there is no verdict,
    however clear the interval over test samples and fine-tuning seeds looks; the README prints the estimate and why."""
    inits = ["scratch", "uno", "gasp"]
    one = _compare(_stats({"scratch": 1.2, "uno": 1.0, "gasp": 0.8}, runs=3, pretrain=1), inits)
    two = _compare(_stats({"scratch": 1.2, "uno": 1.0, "gasp": 0.8}, runs=3, pretrain=2), inits)
    for pair in ("gasp>uno", "uno>scratch"):
        assert (
            one["low"]["pairs"][pair]["verdict"] == NO_VERDICT
            and "1 pre-training seed" in one["low"]["pairs"][pair]["why"]
        )
        assert one["low"]["pairs"][pair]["low"] > 0  # the interval alone would have said "better"
        assert two["low"]["pairs"][pair]["verdict"] == "better"
    assert one["low"]["vs_baseline"]["gasp"]["verdict"] == "better"  # no pre-training on the baseline's side
    metrics = {"trajectory": {"results": {i: {"low": {"mean": {}, "std": {}}} for i in inits}}}
    write_report(metrics, {}, tmp_path, inits, ["low"], {"trajectory": one})
    readme = (tmp_path / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| Ego trajectory | low |"))
    assert row.count(NO_VERDICT) == 2 and "better" not in row and "[" not in row


def test_trajectory_bev_only_head_is_a_co_primary_row(tmp_path):
    """The BEV-only head (no odometry) gets its own main-table row, intervals and verdicts: here it orders the inits
    the other way round from the odometry head, and the report must show both."""
    inits = ["scratch", "uno", "gasp"]
    stats = _stats({"scratch": 1.2, "uno": 1.0, "gasp": 0.8}, runs=2)
    blind = _stats({"scratch": 0.8, "uno": 1.0, "gasp": 1.2}, runs=2, baseline=False)
    for i in inits:
        for run, s in stats[i]["low"].items():
            s["l2_blind"] = blind[i]["low"][run]["l2"]
    ((metric, direction, fn),) = TrajectoryTask.co_primary
    main = _compare(stats, inits)
    co = compare("trajectory", stats, np.arange(N), inits, ["low"], fn, CFG, direction)
    assert (
        main["low"]["pairs"]["gasp>uno"]["verdict"] == "better" and co["low"]["pairs"]["gasp>uno"]["verdict"] == "worse"
    )
    # the baseline has no BEV-only head: its own L2 stands in
    assert co["low"]["baseline"]["estimate"] == main["low"]["baseline"]["estimate"]
    metrics = {"trajectory": {"results": {i: {"low": {"mean": {}, "std": {}}} for i in inits}}}
    summary = write_report(
        metrics,
        {},
        tmp_path,
        inits,
        ["low"],
        {"trajectory": main, f"trajectory:{metric}": {**co, "direction": direction}},
    )
    readme = (tmp_path / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| Ego trajectory (L2 avg 1-3 s, BEV-only head")]
    assert len(rows) == 3  # main table, pairs, against the baseline
    assert "**worse**" in rows[1] and f"trajectory:{metric}" in summary["tasks"]
