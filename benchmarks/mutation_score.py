"""Mutation score of the modules where a silent bug costs most, with cosmic-ray, in a scratch copy of the checkout.

    make mutants                                    # every module below
    python benchmarks/mutation_score.py metrics stats [--timeout 120] [--keep DIR] [--sample N]

For each module, cosmic-ray applies its operators one mutant at a time to a copy of the checkout (the working tree is
never touched) and runs the fast tests that claim to cover the module; the score is the share of mutants they kill.
Survivors are listed (line, operator, occurrence) so that each can be killed by a test or justified.

Operators that only make type errors out of float arithmetic (``a * b`` -> ``a << b``, ``a ^ b``, ``a % b``, ``a ** b``,
``a // b``; ``-x`` -> ``~x`` / ``not x``; arithmetic <-> bitwise) are filtered out with cosmic-ray's operators filter
(``--all-operators`` keeps them): any test that executes the line kills them, so they cost test time (more than half
of all mutants) without measuring how strong the tests are. Swaps among + - * /, between & and |, comparisons,
numbers, ``not`` and loop mutants are all kept.

``--sample N`` runs a seeded random sample of N of a module's mutants (the rest are marked skipped): the score is
then an estimate, printed with its 95% Wilson interval, and the survivors listed are those of the sample. Not part of
`make test`: it runs the tests once per mutant (minutes per module on 2 cores). Needs `pip install cosmic-ray`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES: dict[str, tuple[str, list[str]]] = {
    "metrics": (
        "gasp_core/tasks/metrics.py",
        [
            "tests/tasks/test_metrics.py",
            "tests/tasks/test_evaluation.py",
            "tests/tasks/test_labels.py",
            "tests/tasks/test_oracles.py",
        ],
    ),
    "stats": ("gasp_core/tasks/stats.py", ["tests/tasks/test_stats.py", "tests/tasks/test_report.py"]),
    "labels": (
        "gasp_core/tasks/labels.py",
        ["tests/tasks/test_labels_reference.py", "tests/tasks/test_labels.py", "tests/tasks/test_evaluation.py"],
    ),
    "samples": ("gasp_core/data/samples.py", ["tests/train/test_windows.py", "tests/targets/test_build.py"]),
    "occupancy": (
        "gasp_core/targets/occupancy.py",
        ["tests/targets/test_occupancy_reference.py", "tests/targets/test_occupancy.py"],
    ),
    "ego_path": ("gasp_core/targets/ego_path.py", ["tests/targets/test_ego_path.py", "tests/train/test_dataset.py"]),
}
TRIVIAL_OPERATORS = [
    r"core/ReplaceBinaryOperator_\w+_(FloorDiv|Mod|Pow|RShift|LShift|BitXor)$",
    r"core/ReplaceBinaryOperator_(Add|Sub|Mul|Div)_(BitOr|BitAnd)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd)_(Add|Sub|Mul|Div)$",
    r"core/ReplaceUnaryOperator_USub_(Invert|Not)$",
    r"core/ReplaceUnaryOperator_Invert_(UAdd|USub)$",
]
COPIED = (
    "gasp_core",
    "tests",
    "configs",
    "stages",
    "orchestration",
    "benchmarks",
    "pyproject.toml",
    "params.yaml",
    "dvc.yaml",
)


def _copy_checkout(dest: Path) -> Path:
    """The checkout's code and tests under dest/checkout, with ../shared beside it as in CI."""
    work = dest / "checkout"
    work.mkdir(parents=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, work / name)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (dest / "shared").symlink_to(shared)
    return work


def _sample_pending(session: Path, keep: int, seed: int = 0) -> None:
    """Mark all but ``keep`` seeded-random pending mutants as skipped ("not sampled")."""
    import random

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = sorted(item.job_id for item in db.pending_work_items)
        chosen = set(random.Random(seed).sample(pending, min(keep, len(pending))))
        for job_id in pending:
            if job_id not in chosen:
                db.set_result(job_id, WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n),
    )
    return centre - half, centre + half


def score(name: str, work: Path, timeout: float, all_operators: bool = False, sample: int | None = None) -> dict:
    module, tests = MODULES[name]
    tests = [t for t in tests if (work / t).is_file()]
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider " + " ".join(tests)
    cfg = work / f"cr_{name}.toml"
    cfg.write_text(
        f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout}\nexcluded-modules = []\n'
        f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n'
    )
    if not all_operators:
        patterns = ", ".join("'" + p + "'" for p in TRIVIAL_OPERATORS)
        cfg.write_text(cfg.read_text() + f"\n[cosmic-ray.filters.operators-filter]\nexclude-operators = [{patterns}]\n")
    session = work / f"cr_{name}.sqlite"
    env = {**os.environ, "PYTHONPATH": str(work)}
    env.pop("CI", None)
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    steps = [cr + ["init", str(cfg), str(session)], cr + ["baseline", str(cfg)]]
    if not all_operators:
        steps.append([sys.executable, "-m", "cosmic_ray.tools.filters.operators_filter", str(session), str(cfg)])
    for step in steps:
        res = subprocess.run(step, cwd=work, env=env, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"{' '.join(step[2:4])} failed for {module}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    if sample:
        _sample_pending(session, sample)
    res = subprocess.run(cr + ["exec", str(cfg), str(session)], cwd=work, env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"cosmic-ray exec failed for {module}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    dump = subprocess.run(cr + ["dump", str(session)], cwd=work, env=env, capture_output=True, text=True, check=True)
    killed, survived, other, filtered, unsampled = 0, [], 0, 0, 0
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        outcome = (result or {}).get("test_outcome")
        if (result or {}).get("worker_outcome") == "skipped":
            if (result or {}).get("output") == "not sampled":
                unsampled += 1
            else:
                filtered += 1
        elif outcome == "killed":
            killed += 1
        elif outcome == "survived":
            m = item["mutations"][0]
            survived.append(f"{m['module_path']}:{m['start_pos'][0]} {m['operator_name']} #{m['occurrence']}")
        else:
            other += 1
    total = killed + len(survived)
    return {
        "module": module,
        "tests": tests,
        "mutants": total,
        "killed": killed,
        "score": killed / total if total else None,
        "not_run": other,
        "filtered": filtered,
        "not_sampled": unsampled,
        "score_95ci": [round(x, 3) for x in wilson(killed, total)] if total else None,
        "survivors": survived,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(MODULES), help=f"of {list(MODULES)}")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant's test run")
    parser.add_argument("--sample", type=int, default=None, help="run a seeded random sample of N mutants per module")
    parser.add_argument("--all-operators", action="store_true", help="keep the type-error operators (see above)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the scratch copy here (default: a temporary folder)"
    )
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="gasp-mutants-"))
    work = _copy_checkout(scratch)
    results = []
    for name in args.modules:
        r = score(name, work, args.timeout, args.all_operators, args.sample)
        results.append(r)
        print(
            f"{name:<10} {r['module']:<34} {r['killed']:>4}/{r['mutants']:<4} killed  score "
            f"{(r['score'] or 0):.2f} {r['score_95ci']}  ({r['not_run']} timed out or incompetent, {r['filtered']} "
            f"filtered, {r['not_sampled']} not sampled)",
            flush=True,
        )
        for s in r["survivors"]:
            print(f"    survived: {s}", flush=True)
    (scratch / "mutation_score.json").write_text(json.dumps(results, indent=1))
    print(f"details: {scratch / 'mutation_score.json'}")
    if args.keep is None:
        shutil.rmtree(scratch / "checkout", ignore_errors=True)


if __name__ == "__main__":
    main()
