"""Start-up of every stage script: ``python stages/<stage>.py --help`` against ``python -c pass``.

    python benchmarks/stage_help.py [--runs 5] [--limit-s 1.5] [--stages stages]

A DVC run starts ~30 stage processes; each parses its arguments before it imports the library (torch, timm,
torchvision, polars, ...), so ``--help`` and a wrong argument answer at once. Each script's ``--help`` runs ``--runs``
times in a fresh interpreter (the same one as this script), interleaved with the bare interpreter's start-up measured
in the same loop; the table gives the median wall time of each and the script's time over the reference. Exits 1 when a
script's median is over ``--limit-s`` or its ``--help`` fails.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per script (the median is reported)")
    parser.add_argument("--limit-s", type=float, default=1.5, help="the most a script's --help may take")
    parser.add_argument(
        "--stages", type=Path, default=ROOT / "stages", help="folder of the scripts (e.g. another commit's copy)"
    )
    args = parser.parse_args(argv)

    scripts = sorted(args.stages.resolve().glob("*.py"))
    reference: list[float] = []
    times: dict[str, list[float]] = {s.name: [] for s in scripts}
    failed: dict[str, str] = {}
    for _ in range(args.runs):
        for script in scripts:
            reference.append(_wall_s(["-c", "pass"]))
            if script.name in failed:
                continue
            try:
                times[script.name].append(_wall_s([str(script), "--help"]))
            except RuntimeError as err:
                failed[script.name] = str(err)

    ref = statistics.median(reference)
    print(f"{'script':<24} {'--help median s':>16} {'over python -c pass':>20}")
    print(f"{'python -c pass':<24} {ref:>16.3f} {'':>20}")
    over = []
    for name, walls in times.items():
        if name in failed:
            print(f"{name:<24} {'failed':>16}")
            continue
        med = statistics.median(walls)
        flag = "  OVER LIMIT" if med > args.limit_s else ""
        print(f"{name:<24} {med:>16.3f} {med - ref:>+20.3f}{flag}")
        if med > args.limit_s:
            over.append(name)
    print(f"({args.runs} runs each, limit {args.limit_s} s, {sys.executable})")
    for name, err in failed.items():
        print(f"\n{name}: {err}", file=sys.stderr)
    if over or failed:
        print(f"over {args.limit_s} s or failing: {sorted([*over, *failed])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
