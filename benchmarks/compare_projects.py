"""One initialisation in two projects (same world and test split, a setting changed), paired bootstrap per task.

    python benchmarks/compare_projects.py A B [--init gasp] [--label-a in-domain] [--label-b random]

A and B are project roots whose ``evaluate`` stages ran (``data/eval/<task>/stats.npz``), e.g. the demo and the same
preset with another DINO teacher. The same test samples and run seeds on both sides make the comparison paired:
each replicate resamples the test samples and runs once and scores both projects on it, as the report compares
two initialisations. Prints, per task and label budget, the interval of A - B (signed so that positive means A is
better) and its verdict. Refuses projects whose test samples differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from gasp_core.tasks.config import TASKS
from gasp_core.tasks.evaluation import load_arrays, split_stats
from gasp_core.tasks.registry import TASK_CLASSES
from gasp_core.tasks.stats import Bootstrap, BootstrapConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--init", default="gasp")
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    args = parser.parse_args()
    boot_cfg = BootstrapConfig(**yaml.safe_load((args.a / "params.yaml").read_text())["report"]["bootstrap"])
    print(
        f"{args.init}: {args.label_a} ({args.a}) - {args.label_b} ({args.b}); "
        f"{boot_cfg.level:.0%} paired bootstrap, {boot_cfg.replicates} replicates over test {boot_cfg.unit}s and runs\n"
    )
    print(
        f"| task (main metric) | budget | {args.label_a} | {args.label_b} | {args.label_a} - {args.label_b} | verdict |"
    )
    print("|---|---|---|---|---|---|")
    skipped = []
    for task in TASKS:
        paths = [root / "data" / "eval" / task / "stats.npz" for root in (args.a, args.b)]
        if not all(p.exists() for p in paths):
            skipped.append(f"{task} (not evaluated in {' and '.join(str(p) for p in paths if not p.exists())})")
            continue
        arrays = [load_arrays(p) for p in paths]
        if not np.array_equal(arrays[0]["sample_log"], arrays[1]["sample_log"]):
            raise SystemExit(f"{task}: the two projects' test samples differ: not a paired comparison")
        split = [split_stats(a) for a in arrays]
        if not all(args.init in s for s in split):
            skipped.append(f"{task} (no fine-tuned {args.init} runs in both)")
            continue
        stats = [s[args.init] for s in split]
        groups = arrays[0]["sample_log"] if boot_cfg.unit == "log" else np.arange(len(arrays[0]["sample_log"]))
        fn = TASK_CLASSES[task].main_from_stats
        metric, better = TASK_CLASSES[task].main_metric
        for budget in stats[0]:
            runs = [[s[budget][r] for r in sorted(s[budget])] for s in stats]
            boot = Bootstrap(groups, boot_cfg)
            a, b = boot.interval(runs[0], fn), boot.interval(runs[1], fn)
            d = boot.difference(runs[0], runs[1], fn, better == "higher")
            print(
                f"| {task} ({metric}) | {budget} | {a['estimate']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | "
                f"{b['estimate']:.3f} [{b['low']:.3f}, {b['high']:.3f}] | {d['difference']:+.3g} [{d['low']:+.3g}, "
                f"{d['high']:+.3g}] | {d['verdict']} |"
            )
    for line in skipped:
        print(f"\nskipped: {line}")


if __name__ == "__main__":
    main()
