"""Which verdicts of two or more reports agree: the robustness check of a comparison across worlds.

    python benchmarks/compare_verdicts.py reports studies/world_seed_1 [--labels "seed 0" "seed 1"]

Each argument is a report folder (``summary.json``, written by the ``report`` stage). Prints, per task, label budget
and comparison (GASP vs UnO, UnO vs scratch, each initialisation vs the non-learned baseline where the task has one),
each report's difference with its interval and verdict, and whether the verdict holds in all of them: a decisive
verdict (better or worse) that every report reaches. Interval levels must match.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(summary: dict) -> dict[tuple[str, str, str], dict]:
    """(task, budget, comparison) -> {difference, low, high, verdict}."""
    out = {}
    for task, t in summary["tasks"].items():
        for budget in summary["budgets"]:
            cell = t.get(budget, {})
            for pair, r in cell.get("pairs", {}).items():
                out[(task, budget, pair.replace(">", " vs "))] = r
            for init, r in cell.get("vs_baseline", {}).items():
                out[(task, budget, f"{init} vs baseline")] = r
    return out


def agreement(verdicts: list[str | None]) -> str:
    if any(v is None for v in verdicts):
        return "missing"
    if "no verdict" in verdicts:  # a report with one pre-training seed decides nothing
        return "no verdict somewhere (one pre-training seed)"
    if len(set(verdicts)) == 1:
        return f"holds ({verdicts[0]})" if verdicts[0] in ("better", "worse") else "inconclusive in all"
    decisive = {v for v in verdicts if v in ("better", "worse")}
    return "flips" if len(decisive) > 1 else "not in all"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument("--labels", nargs="+", default=None)
    args = parser.parse_args(argv)
    labels = args.labels or [str(r) for r in args.reports]
    if len(labels) != len(args.reports) or len(labels) < 2:
        parser.error("give two or more reports and, with --labels, one label per report")
    summaries = []
    for folder in args.reports:
        path = folder / "summary.json"
        if not path.is_file():
            parser.error(f"{path} is missing: run the report stage there first")
        summaries.append(json.loads(path.read_text()))
    levels = {s["level"] for s in summaries}
    if len(levels) != 1:
        parser.error(f"the reports' interval levels differ: {sorted(levels)}")
    tables = [rows(s) for s in summaries]
    keys = list(dict.fromkeys(k for t in tables for k in t))
    print(f"{levels.pop():.0%} paired-bootstrap intervals; positive differences favour the first-named model\n")
    print("| task | budget | comparison | " + " | ".join(labels) + " | across worlds |")
    print("|---|---|---|" + "---|" * len(labels) + "---|")
    tally: dict[str, int] = {}
    for key in keys:
        cells, verdicts = [], []
        for t in tables:
            r = t.get(key)
            verdicts.append(None if r is None else r["verdict"])
            cells.append(
                "n/a" if r is None else f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] {r['verdict']}"
            )
        a = agreement(verdicts)
        tally[a] = tally.get(a, 0) + 1
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {a} |")
    print("\n" + "; ".join(f"{n} {a}" for a, n in sorted(tally.items())))


if __name__ == "__main__":
    main()
