"""Scaling of the per-log stages over backends and worker counts, on one machine, in one run.

    python benchmarks/parallel_scaling.py [--logs 8] [--seconds 2] [--workers 1 2] [--backends sequential local ray]

Generates a small embedded world (``--logs`` logs of ``--seconds`` s; AV2 format), then for each backend x worker
count runs ``ingest``, ``dino_targets`` (the random-weight ViT at 112 px), ``occupancy_labels`` and ``task_labels`` (gasp_core/parallel.py's ``map_jobs``, the stages'
own functions) into a fresh folder and reports, per stage: logs/s, efficiency T1 / (N * TN) against the 1-worker
local run, p50 / p95 seconds per log (from the stages' own per-log timings where they keep one; else the wall time
over the logs), the time to the first finished log (Ray's start-up shows here), and a hash of the stage's output,
which must equal the sequential run's. Ray starts one local cluster (``num_cpus`` = the largest worker count).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gasp_core import parallel  # noqa: E402
from gasp_core.data.ingest import IngestConfig, ingest  # noqa: E402
from gasp_core.data.samples import SceneConfig  # noqa: E402
from gasp_core.data.store import LogStore  # noqa: E402
from gasp_core.models.config import VoxelizerConfig  # noqa: E402
from gasp_core.parallel import ComputeConfig  # noqa: E402
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels  # noqa: E402
from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets  # noqa: E402
from gasp_core.targets.ego_path import EgoPathConfig  # noqa: E402
from gasp_core.targets.occupancy import OccupancyConfig  # noqa: E402
from gasp_core.tasks.build import build_task_labels  # noqa: E402
from gasp_core.tasks.config import TaskLabelsConfig  # noqa: E402
from gasp_core.teacher.dinov2 import TeacherConfig  # noqa: E402

SCENE = SceneConfig(extent_m=(-40.0, 40.0, -40.0, 40.0, -3.0, 5.0), past_sweeps=2, horizon_s=1.0)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


MODULES = ("gasp_core.data.ingest", "gasp_core.targets.dino", "gasp_core.targets.build", "gasp_core.tasks.build")
"""The modules whose ``map_jobs`` runs a stage's per-log jobs."""
STAGES = ("ingest", "dino_targets", "occupancy_labels", "task_labels")


class Timed:
    """Wraps ``parallel.map_jobs`` to record when each log's result reached the driver."""

    def __init__(self) -> None:
        self.done: list[float] = []
        self.start = 0.0
        self._orig = parallel.map_jobs

    def __enter__(self):
        def timed(fn, jobs, compute, desc, progress=True, postfix=None, **kw):
            self.start = time.perf_counter()

            def note(results):
                self.done.append(time.perf_counter() - self.start)
                return postfix(results) if postfix else {}

            return self._orig(fn, jobs, compute, desc, progress=progress, postfix=note, **kw)

        for mod in MODULES:
            sys.modules[mod].map_jobs = timed
        return self

    def __exit__(self, *exc) -> None:
        for mod in MODULES:
            sys.modules[mod].map_jobs = self._orig


def run(raw: Path, out: Path, compute: ComputeConfig) -> dict[str, dict]:
    occ = OccupancyLabelsConfig(
        occupancy=OccupancyConfig(stride=3, occupied_per_sample=3000, free_per_sample=3000, missing_per_sample=1000),
        ego_path=EgoPathConfig(positives_per_sample=500, near_per_sample=500, far_per_sample=200),
    )
    vox = VoxelizerConfig(voxel_size_m=0.625, z_bins=8, intensity_levels=())
    labels = TaskLabelsConfig(forecast_times_s=[0.0, 1.0], waypoint_times_s=[0.5, 1.0])
    stages = {
        "ingest": lambda: ingest(
            IngestConfig(format="av2", root=str(raw.parent), split=raw.name),
            out / "ingest",
            progress=False,
            compute=compute,
        ),
        "dino_targets": lambda: build_dino_targets(
            out / "ingest",
            out=out / "dino_targets",
            cfg=DinoTargetsConfig(
                teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8), pca_dim=8, pca_fit_frames=6
            ),
            fit_logs=LogStore(out / "ingest").log_ids[:1],
            progress=False,
            compute=compute,
        ),
        "occupancy_labels": lambda: build_occupancy_labels(
            out / "ingest", out=out / "occupancy_labels", scene=SCENE, cfg=occ, progress=False, compute=compute
        ),
        "task_labels": lambda: build_task_labels(
            out / "ingest",
            out / "occupancy_labels",
            out=out / "task_labels",
            scene=SCENE,
            vox=vox,
            occ_cfg=occ,
            cfg=labels,
            logs=LogStore(out / "ingest").log_ids,
            progress=False,
            ray_logs=None,
            compute=compute,
        ),
    }
    result = {}
    for name, call in stages.items():
        with Timed() as timed:
            t = time.perf_counter()
            call()
            wall = time.perf_counter() - t
        gaps = np.diff([0.0, *sorted(timed.done)])
        result[name] = {
            "wall_s": wall,
            "logs": len(timed.done),
            "first_s": min(timed.done) if timed.done else float("nan"),
            "p50_s": float(np.percentile(gaps, 50)) if len(gaps) else float("nan"),
            "p95_s": float(np.percentile(gaps, 95)) if len(gaps) else float("nan"),
            "hash": digest(out / name),
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", default=["sequential", "local", "ray"])
    a = p.parse_args()
    from gasp_core.sim.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "train"
        generate("av2", str(raw.parent), a.logs, a.seconds, 0, max(a.workers), {}, "train", "v1.0-trainval")
        runs: dict[tuple[str, int], dict] = {}
        for backend in a.backends:
            for n in [1] if backend == "sequential" else a.workers:
                if backend == "ray":
                    import ray

                    if not ray.is_initialized():
                        ray.init(num_cpus=max(a.workers), include_dashboard=False, log_to_driver=False)
                out = Path(tmp) / f"{backend}_{n}"
                runs[(backend, n)] = run(raw, out, ComputeConfig(backend=backend, workers=n))
                shutil.rmtree(out)
        base = runs.get(("local", 1)) or next(iter(runs.values()))
        ref = runs.get(("sequential", 1)) or base
        print(f"{a.logs} logs x {a.seconds:g} s; efficiency = T(local, 1) / (N x T(backend, N))\n")
        print("| stage | backend | workers | logs/s | efficiency | p50 s/log | p95 s/log | first log s | hash |")
        print("|---|---|---|---|---|---|---|---|---|")
        for stage in STAGES:
            for (backend, n), r in runs.items():
                s = r[stage]
                eff = base[stage]["wall_s"] / (n * s["wall_s"])
                same = "same" if s["hash"] == ref[stage]["hash"] else f"DIFFERS {s['hash']}"
                print(
                    f"| {stage} | {backend} | {n} | {s['logs'] / s['wall_s']:.2f} | {eff:.2f} | {s['p50_s']:.2f} | "
                    f"{s['p95_s']:.2f} | {s['first_s']:.2f} | {same} |"
                )


if __name__ == "__main__":
    main()
