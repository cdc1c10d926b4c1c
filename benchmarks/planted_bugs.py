"""The bugs a mutation audit planted and the fast tests let through, planted again: each must now fail its tests.

    python benchmarks/planted_bugs.py [NAME ...] [--list]

Each planted bug is one textual edit of the production code (``old`` -> ``new``, which must match exactly once, so a
refactor that moves the code makes this script fail loudly instead of planting nothing). It is applied to a scratch
copy of the checkout (the working tree is never touched), the tests named for it run there, and the script prints
which of them fail: those are the tests that kill it. A bug that no test kills is reported ``SURVIVED`` and the
script exits 1. Complements ``mutation_score.py`` (cosmic-ray's blind operators) with the semantic bugs an operator
cannot write (a shifted time, a dropped pooling, a hand-written AP). Not part of ``make test``: about a minute a bug.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_score import _copy_checkout  # noqa: E402


@dataclass(frozen=True)
class Planted:
    name: str
    """What the bug is, as the audit described it."""
    path: str
    """Production file it is planted in."""
    old: str
    """Exact text replaced (must occur once)."""
    new: str
    """The bug."""
    tests: tuple[str, ...]
    """Test files or node ids that must fail."""


HAND_AP = (
    "order = np.argsort(-scores, kind='stable'); hit = labels[order]\n"
    "    return float((np.cumsum(hit) / np.arange(1, len(hit) + 1))[hit].sum() / hit.sum())"
)

BUGS: tuple[Planted, ...] = (
    Planted(
        "AP: hand-written, tie order decides ([.5, .5] with [1, 0] gives 1.0)",
        "gasp_core/tasks/metrics.py",
        "return float(average_precision_score(labels, scores))",
        HAND_AP,
        ("tests/tasks/test_evaluation.py", "tests/tasks/test_metrics.py"),
    ),
    Planted(
        "collision: rear overhang dropped",
        "gasp_core/tasks/metrics.py",
        "(length / 2 - rear_overhang_m)",
        "(length / 2)",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "collision: rear overhang sign flipped",
        "gasp_core/tasks/metrics.py",
        "(length / 2 - rear_overhang_m)",
        "(length / 2 + rear_overhang_m)",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "collision: the ego's own axes only (its footprint drawn at yaw 0)",
        "gasp_core/tasks/metrics.py",
        "ego = _rectangle(centre, yaw, length, width)",
        "ego = _rectangle(centre, 0.0, length, width)",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "collision: object boxes drawn without their yaw",
        "gasp_core/tasks/metrics.py",
        "_corners(centres[near], yaws[near], lw[near, 0], lw[near, 1])",
        "_corners(centres[near], 0.0 * yaws[near], lw[near, 0], lw[near, 1])",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "collision: the prefilter forgets the ego's own size (misses boxes that reach its corners)",
        "gasp_core/tasks/metrics.py",
        "<= ego_radius + 0.5 * np.hypot",
        "<= 0.5 * np.hypot",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "AP compaction: the negatives of dropped bins are dropped too",
        "gasp_core/tasks/metrics.py",
        "return np.add.reduceat(hist[..., kept[0] :], kept - kept[0], axis=-1)",
        "return hist[..., kept]",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "AP compaction: a dropped bin's negatives go to the kept bin above it",
        "gasp_core/tasks/metrics.py",
        "return np.add.reduceat(hist[..., kept[0] :], kept - kept[0], axis=-1)",
        "return np.flip(np.add.reduceat(np.flip(hist[..., : kept[-1] + 1], -1), kept[-1] - kept[::-1], axis=-1), -1)",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "sim annotation: points counted only within half the box's reach in x (misses a box's corners)",
        "gasp_core/sim/world.py",
        "reach = 0.5 * float(np.hypot(tr.length_m, tr.width_m)) + 1e-6",
        "reach = 0.25 * float(np.hypot(tr.length_m, tr.width_m))",
        ("tests/sim/test_formats.py::test_points_inside_boxes_match_num_interior_pts",),
    ),
    Planted(
        "LR: the warm-up one step too long",
        "gasp_core/optim.py",
        "total_iters=max(1, warmup_steps - 1)",
        "total_iters=max(1, warmup_steps)",
        ("tests/test_optim.py",),
    ),
    Planted(
        "LR: cosine over all steps, warm-up included (never reaches zero)",
        "gasp_core/optim.py",
        "T_max=max(1, steps - warmup_steps)",
        "T_max=max(1, steps)",
        ("tests/test_optim.py",),
    ),
    Planted(
        "step: gradient clipping skipped",
        "gasp_core/optim.py",
        "if grad_clip > 0:",
        "if grad_clip > 1e9:",
        ("tests/test_optim.py",),
    ),
    Planted(
        "step: the rate reported is the next step's",
        "gasp_core/optim.py",
        'lr = float(opt.param_groups[0]["lr"])  # the rate this step used\n        sched.step()',
        'sched.step()\n        lr = float(opt.param_groups[0]["lr"])',
        ("tests/test_optim.py",),
    ),
    Planted(
        "model card: a random-weight teacher goes unmentioned",
        "gasp_core/card.py",
        'if info.get("random_weights"):',
        'if info.get("random_weight"):',
        ("tests/train/test_pretrain.py",),
    ),
    Planted(
        "PR curve: recall over every query instead of the positives",
        "gasp_core/tasks/metrics.py",
        "return tp[keep] / pos.sum(), tp[keep] / called[keep]",
        "return tp[keep] / (pos + neg).sum(), tp[keep] / called[keep]",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "PR curves: an init's curve from its last run, not the first",
        "gasp_core/tasks/evaluation.py",
        "hist = runs[sorted(runs)[0]][name]",
        "hist = runs[sorted(runs)[-1]][name]",
        ("tests/tasks/test_evaluation.py",),
    ),
    Planted(
        "gasp view: box quaternions in the store's wxyz order where rerun wants xyzw",
        "gasp_core/apps/view.py",
        'q = frame.select("qx", "qy", "qz", "qw").to_numpy()',
        'q = frame.select("qw", "qx", "qy", "qz").to_numpy()',
        ("tests/train/test_pretrain.py::test_gasp_view_records_the_log_and_the_models_field_and_rerun_reads_it_back",),
    ),
    Planted(
        "gasp view: lidar logged at the pose table's times, not the sweeps'",
        "gasp_core/apps/view.py",
        "rec.set_time(TIMELINE, duration=_seconds(log, ts))\n        T = log.city_T_ego(ts)[0]",
        "rec.set_time(TIMELINE, duration=_seconds(log, ts) + 0.01)\n        T = log.city_T_ego(ts)[0]",
        ("tests/train/test_pretrain.py::test_gasp_view_records_the_log_and_the_models_field_and_rerun_reads_it_back",),
    ),
    Planted(
        "L2: waypoint index read as time - 1 (right only when times are 1, 2, 3 s)",
        "gasp_core/tasks/metrics.py",
        "err[_time_index(times_s, t)]",
        "err[int(round(t)) - 1]",
        ("tests/tasks/test_metrics.py",),
    ),
    Planted(
        "objects_at: every other track dropped",
        "gasp_core/tasks/labels.py",
        "tracks = np.flatnonzero(exact | between)",
        "tracks = np.flatnonzero(exact | between)[::2]",
        ("tests/tasks/test_labels.py", "tests/tasks/test_labels_reference.py"),
    ),
    Planted(
        "forecast raster: every cell of a present class set",
        "gasp_core/tasks/forecast/labels.py",
        "out[i, j] = boxes_mask(grid, obj.center[m, :2], obj.yaw[m], obj.size_lwh[m, 0], obj.size_lwh[m, 1])",
        "out[i, j] = True",
        ("tests/tasks/test_labels.py", "tests/tasks/test_labels_reference.py"),
    ),
    Planted(
        "forecast raster: 2x2 max-pool replaced by a subsample",
        "gasp_core/tasks/forecast/labels.py",
        ".any(axis=(3, 5))",
        "[:, :, :, 0, :, 0]",
        ("tests/tasks/test_labels.py",),
    ),
    Planted(
        "semantic labels: query times shifted by 50 ms (0.1 s bin centres)",
        "gasp_core/tasks/semantic_occupancy/labels.py",
        "t_ns = t0_ns + np.round(np.asarray(xyzt[:, 3], np.float64) * 1e9).astype(np.int64)",
        "t_ns = t0_ns + 50_000_000 + np.round(np.asarray(xyzt[:, 3], np.float64) * 1e9).astype(np.int64)",
        ("tests/tasks/test_evaluation.py", "tests/tasks/test_labels_reference.py"),
    ),
    Planted(
        "depth rendering: no interpolation between steps",
        "gasp_core/tasks/occupancy/render.py",
        "depth[r] = steps[k - 1] + (0.5 - p0) / max(p1 - p0, 1e-6) * step_m",
        "depth[r] = steps[k]",
        ("tests/tasks/test_oracles.py::test_depth_rendering_interpolates_to_the_analytic_crossing",),
    ),
    Planted(
        "verdicts: an interval touching 0 counted as better",
        "gasp_core/tasks/stats.py",
        "    if low > 0:",
        "    if low >= 0:",
        ("tests/tasks/test_stats.py", "tests/tasks/test_report.py"),
    ),
    Planted(
        "verdicts: from the point difference alone (the interval ignored)",
        "gasp_core/tasks/stats.py",
        "    if low > 0:\n",
        "    low = high = (low + high) / 2\n    if low > 0:\n",
        ("tests/tasks/test_stats.py", "tests/tasks/test_report.py"),
    ),
    Planted(
        "bootstrap: runs not resampled (seed spread ignored)",
        "gasp_core/tasks/stats.py",
        "np.take_along_axis(per_run, self._run_draws(len(runs)), axis=1)",
        "per_run",
        ("tests/tasks/test_stats.py",),
    ),
    Planted(
        "bootstrap: unpaired (each initialisation draws its own test samples)",
        "gasp_core/tasks/stats.py",
        "per_run[i : i + self.chunk, r] = _metric(stats, self.weights[i : i + self.chunk], fn)",
        "per_run[i : i + self.chunk, r] = _metric(stats, self.rng.permutation(self.weights)[i : i + self.chunk], fn)",
        ("tests/tasks/test_stats.py",),
    ),
    Planted(
        "sample windows: input window shifted one sweep into the future",
        "gasp_core/data/samples.py",
        "sweep_ns[i - scene.past_sweeps + 1 : i + 1]",
        "sweep_ns[i - scene.past_sweeps + 2 : i + 2]",
        ("tests/train/test_windows.py", "tests/targets/test_build.py"),
    ),
    Planted(
        "split discipline: pre-training reads every log of the store",
        "gasp_core/train/dataset.py",
        "self.log_ids = list(logs) if logs is not None else self.store.log_ids",
        "self.log_ids = self.store.log_ids",
        ("tests/train/test_splits.py",),
    ),
    Planted(
        "loss composition: the ego weight ignored",
        "gasp_core/models/losses.py",
        'total = total + cfg.ego_weight * losses["ego"]',
        'total = total + losses["ego"]',
        ("tests/models/test_losses.py",),
    ),
    Planted(
        "loss composition: pos_weight dropped from occupancy",
        "gasp_core/models/losses.py",
        'batch["occupancy_label"], pos_weight=w\n',
        'batch["occupancy_label"]\n',
        ("tests/models/test_losses.py",),
    ),
    Planted(
        "voxelizer: intensity level compared with > (a return exactly at a level is dark)",
        "gasp_core/models/voxelizer.py",
        "lit = np.flatnonzero(ground & (pts[:, 3] >= level))",
        "lit = np.flatnonzero(ground & (pts[:, 3] > level))",
        ("tests/models/test_model.py",),
    ),
    Planted(
        "voxelizer: intensity channels ignore the ground band (a bright vehicle roof lights the cell)",
        "gasp_core/models/voxelizer.py",
        "ground = pts[:, 2] <= cfg.intensity_max_z_m",
        "ground = pts[:, 2] <= np.inf",
        ("tests/models/test_model.py",),
    ),
    Planted(
        "voxel codes: the intensity levels read from the z column",
        "gasp_core/models/voxelizer.py",
        "lit = np.flatnonzero(ground & (pts[:, 3] >= level))",
        "lit = np.flatnonzero(ground & (pts[:, 2] >= level))",
        ("tests/train/test_dataset.py::test_rotated_voxels_are_the_rotated_sweeps_voxelized",),
    ),
    Planted(
        "voxel scatter: the rotation turns y by the transpose (points mirrored, not turned)",
        "gasp_core/models/voxelizer.py",
        "R[1, 0] * x + R[1, 1] * y",
        "R[0, 1] * x + R[1, 1] * y",
        ("tests/train/test_dataset.py::test_rotated_voxels_are_the_rotated_sweeps_voxelized",),
    ),
    Planted(
        "unpack_bits: low bit first",
        "gasp_core/models/voxelizer.py",
        "bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)",
        "bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder='little')",
        ("tests/models/test_model.py",),
    ),
    Planted(
        "query draw: only the first rows inside are candidates",
        "gasp_core/train/dataset.py",
        "rows = rng.choice(pool, n, replace=len(pool) < n)",
        "rows = rng.choice(pool[: 2 * n], n, replace=len(pool) < n)",
        ("tests/train/test_dataset.py::test_query_draws_are_uniform_among_the_rows_inside_once_turned",),
    ),
    Planted(
        "query draw: the fallback draws with replacement",
        "gasp_core/train/dataset.py",
        "rows = rng.choice(pool, n, replace=len(pool) < n)",
        "rows = rng.choice(pool, n, replace=True)",
        ("tests/train/test_dataset.py::test_query_draws_are_uniform_among_the_rows_inside_once_turned",),
    ),
    Planted(
        "worker ring: a slot rewritten before it was read goes unnoticed",
        "gasp_core/train/transport.py",
        "if int(written[0]) != seq or int(written[1]) != seq:",
        "if int(written[1]) < seq:",
        ("tests/train/test_transport.py",),
    ),
    Planted(
        "worker ring: a batch is handed out as views into its slot, not copied out",
        "gasp_core/train/transport.py",
        "payload = ring[slot, ALIGN : ALIGN + size].clone()",
        "payload = ring[slot, ALIGN : ALIGN + size]",
        ("tests/train/test_transport.py::test_worker_batches_equal_in_process_batches_past_the_ring_wrap",),
    ),
    Planted(
        "voxel scatter: a point just past the last column lands in the padding bits",
        "gasp_core/models/voxelizer.py",
        "if ix >= 0 and ix < cols and iy >= 0 and iy < rows:",
        "if ix >= 0 and ix <= cols and iy >= 0 and iy < rows:",
        ("tests/models/test_model.py::test_voxelize_and_the_turned_scatter_match_a_plain_numpy_voxelizer",),
    ),
    Planted(
        "trajectory kinematics: acceleration over the whole past instead of half of it",
        "gasp_core/tasks/heads.py",
        "accel = (v_late - v_old) / ((t[:, -1] - t[:, 0]).clamp_min(1e-3)[:, None] / 2)",
        "accel = (v_late - v_old) / ((t[:, -1] - t[:, 0]).clamp_min(1e-3)[:, None])",
        ("tests/tasks/test_finetune.py::test_trajectory_kinematics_of_a_braking_ego",),
    ),
    Planted(
        "persistence baseline: reads the t0 sweep's intensity channels as height bins",
        "gasp_core/models/voxelizer.py",
        "return blocks[sweep, :z_bins]",
        "return blocks[sweep, -z_bins:]",
        ("tests/models/test_model.py",),
    ),
)


def plant(work: Path, bug: Planted) -> str:
    """Apply ``bug`` to the scratch copy; returns the original text to restore."""
    path = work / bug.path
    text = path.read_text()
    n = text.count(bug.old)
    if n != 1:
        raise SystemExit(
            f"{bug.path}: the text of planted bug {bug.name!r} occurs {n} times (expected once); "
            f"update benchmarks/planted_bugs.py to the code"
        )
    path.write_text(text.replace(bug.old, bug.new))
    return text


def failing_tests(work: Path, tests: tuple[str, ...]) -> tuple[list[str], str]:
    """Node ids of the tests that fail (or error) in ``work``, and the tail of pytest's output."""
    env = {"PYTHONPATH": str(work), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rfE", *tests],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", res.stdout, flags=re.M)
    return failed, res.stdout[-1500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="substrings of the bug names to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the planted bugs and exit")
    args = parser.parse_args()
    bugs = [b for b in BUGS if not args.names or any(n in b.name for n in args.names)]
    if args.list:
        for b in bugs:
            print(f"{b.name}  [{b.path}]")
        return
    work = _copy_checkout(Path(tempfile.mkdtemp(prefix="gasp-planted-")))
    clean, out = failing_tests(work, tuple(sorted({t.split("::")[0] for b in bugs for t in b.tests})))
    if clean:
        raise SystemExit(f"the unmutated tests fail already: {clean}\n{out}")
    survived = 0
    for bug in bugs:
        original = plant(work, bug)
        t = time.perf_counter()
        try:
            failed, out = failing_tests(work, bug.tests)
        finally:
            (work / bug.path).write_text(original)
        status = "killed" if failed else "SURVIVED"
        survived += not failed
        print(f"{status:<8} {bug.name}  ({time.perf_counter() - t:.0f} s)", flush=True)
        for f in failed:
            print(f"           by {f}", flush=True)
        if not failed:
            print(out, flush=True)
    print(f"{len(bugs) - survived}/{len(bugs)} planted bugs killed")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
