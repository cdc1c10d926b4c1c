"""How per-log work runs changes no output: the store, the DINO targets (teacher and oracle), the occupancy targets
and the task labels are byte-identical for every backend and worker count; Ray's failures name the log, application errors are not retried, a dead worker
is, and an output the driver cannot see is an error."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.store import LogStore
from gasp_core.models.config import VoxelizerConfig
from gasp_core.parallel import ComputeConfig, JobError, map_jobs
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig
from gasp_core.tasks.build import build_task_labels
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.teacher.dinov2 import TeacherConfig
from tests.train.conftest import TINY_SCENE

OTHER_ID = "00000000-0000-0000-0000-0000000000cd"
BACKENDS = {
    "sequential": ComputeConfig(backend="sequential"),
    "local_1": ComputeConfig(backend="local", workers=1),
    "local_2": ComputeConfig(backend="local", workers=2),
    "ray": ComputeConfig(backend="ray", workers=2),
}


def _digest(folder: Path) -> str:
    """Every file under ``folder``: its relative path and bytes."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def two_logs(av2_split, tmp_path_factory) -> Path:
    split = tmp_path_factory.mktemp("two_logs") / "raw" / "train"
    shutil.copytree(av2_split, split)
    log_id = next(p.name for p in split.iterdir() if p.is_dir())
    shutil.copytree(split / log_id, split / OTHER_ID)
    return split


@pytest.fixture(scope="module")
def outputs(two_logs, tmp_path_factory, request) -> dict[str, dict[str, str]]:
    """Per backend: the digest of the store, the DINO targets, the occupancy targets and the task labels it built."""
    digests = {}
    occ = OccupancyLabelsConfig(
        occupancy=OccupancyConfig(stride=2, occupied_per_sample=300, free_per_sample=300, missing_per_sample=50),
        ego_path=EgoPathConfig(positives_per_sample=50, near_per_sample=50, far_per_sample=20),
    )
    vox = VoxelizerConfig(voxel_size_m=2.0, z_bins=4, intensity_levels=())
    labels_cfg = TaskLabelsConfig(
        forecast_times_s=[0.0, 0.5], waypoint_times_s=[0.5], semantic_from_occupancy=50, semantic_in_boxes=20
    )
    dino = DinoTargetsConfig(
        teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8),
        pca_dim=8,
        pca_fit_frames=6,
        frame_stride=2,
    )
    for name, compute in BACKENDS.items():
        if compute.backend == "ray":
            request.getfixturevalue("ray_cluster")
        root = tmp_path_factory.mktemp(name)
        ingest(
            IngestConfig(format="av2", root=str(two_logs.parent), split=two_logs.name),
            root / "store",
            progress=False,
            compute=compute,
        )
        logs = LogStore(root / "store").log_ids
        assert len(logs) == 2
        for source in ("teacher", "oracle"):  # the teacher's jobs want a GPU (none here: num_gpus 0)
            build_dino_targets(
                root / "store",
                out=root / source,
                cfg=dino,
                fit_logs=logs[:1],
                progress=False,
                test_logs=logs[1:],
                source=source,
                compute=compute,
            )
        build_occupancy_labels(
            root / "store", out=root / "occ", scene=TINY_SCENE, cfg=occ, progress=False, compute=compute
        )
        build_task_labels(
            root / "store",
            root / "occ",
            out=root / "labels",
            scene=TINY_SCENE,
            vox=vox,
            occ_cfg=occ,
            cfg=labels_cfg,
            logs=logs,
            progress=False,
            ray_logs=None,
            compute=compute,
        )
        digests[name] = {stage: _digest(root / stage) for stage in ("store", "teacher", "oracle", "occ", "labels")}
    return digests


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "sequential"])
def test_outputs_are_byte_identical_for_every_backend_and_worker_count(outputs, backend):
    assert outputs[backend] == outputs["sequential"]


def _fail_on_b(job: tuple[str, str]) -> str:
    name, marker_dir = job
    with open(Path(marker_dir) / f"{name}.attempts", "a") as fh:
        fh.write("x")
    if name == "b":
        raise ValueError("bad calibration")
    return name


def _die_once(job: tuple[str, str]) -> str:
    name, marker_dir = job
    marker = Path(marker_dir) / f"{name}.died"
    if name == "b" and not marker.exists():
        marker.write_text("died")
        os._exit(1)  # the worker process dies, as on a lost node
    return name


@pytest.mark.parametrize("backend", ["sequential", "local_2", "ray"])
def test_a_jobs_own_error_names_its_log_and_is_not_retried(backend, tmp_path, request):
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    jobs = [(n, str(tmp_path)) for n in ("a", "b")]
    with pytest.raises(ValueError, match="bad calibration") as err:
        map_jobs(_fail_on_b, jobs, BACKENDS[backend], "test", progress=False, names=["log-a", "log-b"])
    assert any("log-b" in note for note in getattr(err.value, "__notes__", [])), err.value
    assert (tmp_path / "b.attempts").read_text() == "x"  # once: an error of the job itself is not retried


def test_ray_retries_a_dead_worker_then_names_the_log(ray_cluster, tmp_path):
    jobs = [(n, str(tmp_path)) for n in ("a", "b")]
    retried = ComputeConfig(backend="ray", workers=2, max_retries=1)
    assert sorted(map_jobs(_die_once, jobs, retried, "test", progress=False, names=["log-a", "log-b"])) == ["a", "b"]
    (tmp_path / "b.died").unlink()
    no_retry = ComputeConfig(backend="ray", workers=2, max_retries=0)
    with pytest.raises(JobError, match="log-b"):
        map_jobs(_die_once, jobs, no_retry, "test", progress=False, names=["log-a", "log-b"])


@pytest.mark.parametrize("backend", ["sequential", "ray"])
def test_an_output_the_driver_cannot_see_is_an_error(backend, tmp_path, request):
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    with pytest.raises(JobError, match="not visible"):
        map_jobs(
            _fail_on_b,
            [("a", str(tmp_path))],
            BACKENDS[backend],
            "test",
            progress=False,
            visible=lambda name: [tmp_path / "elsewhere" / f"{name}.npz"],
        )
