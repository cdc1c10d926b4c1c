"""benchmarks/compare_verdicts.py: a verdict holds across worlds only when every report reaches it decisively."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from compare_verdicts import agreement, main  # noqa: E402


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        (["better", "better"], "holds (better)"),
        (["worse", "worse", "worse"], "holds (worse)"),
        (["inconclusive", "inconclusive"], "inconclusive in all"),
        (["better", "inconclusive"], "not in all"),
        (["better", "worse"], "flips"),
        (["better", None], "missing"),
        (["no verdict", "no verdict"], "no verdict somewhere (one pre-training seed)"),
        (["better", "no verdict"], "no verdict somewhere (one pre-training seed)"),
    ],
)
def test_agreement(verdicts, expected):
    assert agreement(verdicts) == expected


def _summary(verdict_gu: str, verdict_cv: str) -> dict:
    pair = lambda v, d: {"difference": d, "low": d - 0.1, "high": d + 0.1, "verdict": v}  # noqa: E731
    return {
        "level": 0.95,
        "budgets": ["full"],
        "inits": ["uno", "gasp"],
        "tasks": {
            "trajectory": {
                "full": {"pairs": {"gasp>uno": pair(verdict_gu, 0.3)}, "vs_baseline": {"gasp": pair(verdict_cv, -0.2)}}
            }
        },
    }


def test_table_names_each_comparison_and_its_agreement(tmp_path, capsys):
    for name, s in {"a": _summary("better", "worse"), "b": _summary("better", "inconclusive")}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(s))
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "seed 0", "seed 1"])
    out = capsys.readouterr().out
    assert (
        "| trajectory | full | gasp vs uno | +0.300 [+0.200, +0.400] better | +0.300 [+0.200, +0.400] better | holds (better) |"
        in out
    )
    assert "| trajectory | full | gasp vs baseline |" in out and out.rstrip().endswith("1 holds (better); 1 not in all")
