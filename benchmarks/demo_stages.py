"""Where a fresh clone's ``make demo`` spends its time: install, world, and every DVC stage, against the 12-minute goal.

Clones the checkout (committed ``HEAD``) into ``--dir``, runs ``make setup`` and then ``make demo`` there, stamps each
line of their output with the time it arrived, and prints each step's seconds (a stage runs from its
``Running stage`` line to the next stage's, or to the end of ``dvc repro``) and its share of the total, largest
first. Nothing else should run beside it: on 2 cores a second job doubles the times.

    python benchmarks/demo_stages.py --dir /work/demo-clone [--venv .venv]

``--venv`` copies an existing virtual environment instead of installing (the install is then not measured).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 12 * 60
STAGE = re.compile(r"^Running stage '([^']+)'")


def run_stamped(cmd: list[str], cwd: Path, log) -> list[tuple[float, str]]:
    """Run ``cmd``, echo its output into ``log`` with a time stamp per line; return the (time, line) pairs."""
    lines: list[tuple[float, str]] = []
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        t = time.monotonic()
        lines.append((t, line.rstrip("\n")))
        log.write(f"{t:.3f} {line}")
        log.flush()
    if proc.wait() != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}); see the log")
    return lines


def stage_times(lines: list[tuple[float, str]], start: float, end: float) -> list[tuple[str, float]]:
    """Seconds per step: before the first stage (the world and its ``dvc add``), then each stage to the next."""
    marks = [(t, m.group(1)) for t, line in lines if (m := STAGE.match(line))]
    if not marks:
        return [("make demo (no stage ran)", end - start)]
    steps = [("world (data.dvc) and start-up", marks[0][0] - start)]
    for (t, name), nxt in zip(marks, [*(t for t, _ in marks[1:]), end]):
        steps.append((name, nxt - t))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="where to clone (must not exist)")
    parser.add_argument("--venv", type=Path, default=None, help="copy this virtual environment instead of installing")
    args = parser.parse_args()
    if args.dir.exists():
        sys.exit(f"{args.dir} exists; give a new folder")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(args.dir)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.dir, capture_output=True, text=True, check=True
    ).stdout.strip()
    steps: list[tuple[str, float]] = []
    with (args.dir / "demo_stages.log").open("w") as log:
        if args.venv is not None:
            shutil.copytree(args.venv, args.dir / ".venv", symlinks=True)
        else:
            t0 = time.monotonic()
            run_stamped(["make", "setup"], args.dir, log)
            steps.append(("install (make setup)", time.monotonic() - t0))
        t0 = time.monotonic()
        lines = run_stamped(["make", "demo"], args.dir, log)
        end = next((t for t, line in lines if line.startswith("Use `dvc push`")), lines[-1][0] if lines else t0)
        steps += stage_times(lines, t0, end)
        steps.append(("summary printout", time.monotonic() - end))
    total = sum(s for _, s in steps)
    print(f"fresh clone of {commit} in {args.dir}: {total:.0f} s ({total / 60:.1f} min) against a goal of {GOAL_S} s")
    print("| step | seconds | share |\n|---|---|---|")
    for name, s in sorted(steps, key=lambda x: -x[1]):
        print(f"| {name} | {s:.1f} | {s / total:.1%} |")


if __name__ == "__main__":
    main()
