"""How per-log work is run: one interface, three backends (the top-level ``compute`` section, Hydra group ``compute``).

``sequential`` runs every job in this process; ``local`` in a pool of spawned processes (the default); ``ray`` one Ray
task per job, on the cluster at ``address`` / ``RAY_ADDRESS``, or on a local cluster started for the run. How work
runs is never a param of what it computes: no stage declares ``compute`` in dvc.yaml and no output records it, so
changing the backend or the worker count reruns nothing and every backend writes the same bytes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from gasp_core.config import ConfigError, from_dict
from gasp_core.progress import progress as progress_bar

log = logging.getLogger(__name__)
J = TypeVar("J")
R = TypeVar("R")


@dataclass
class ComputeConfig:
    backend: Literal["sequential", "local", "ray"] = "local"
    """Where per-log jobs run: this process, a local process pool, or Ray tasks."""
    workers: int = 2
    """``local``: processes in the pool. ``ray``: tasks in flight at once (0: twice the cluster's CPUs / num_cpus)."""
    address: str | None = None
    """``ray``: the cluster to join (``ray://host:10001`` or ``host:6379``); None: ``RAY_ADDRESS``, else a local
    cluster started for this run."""
    num_cpus: float = 1.0
    """``ray``: CPUs reserved per task."""
    num_gpus: float = 0.0
    """``ray``: GPUs reserved per task of a stage that wants one (the teacher's per-log feature extraction); 0
    elsewhere."""
    max_retries: int = 2
    """``ray``: retries of a task whose worker or node died; an error raised by the job itself is never retried."""


def compute_config_from_dict(data, strict: bool = False) -> ComputeConfig:
    cfg = from_dict(ComputeConfig, data or {}, "compute", strict)
    if cfg.backend not in ("sequential", "local", "ray"):
        raise ConfigError(f"compute.backend = {cfg.backend!r}: choose sequential, local or ray")
    if cfg.workers < 0 or cfg.max_retries < 0 or cfg.num_cpus <= 0 or cfg.num_gpus < 0:
        raise ConfigError(f"compute: workers, max_retries and num_gpus >= 0 and num_cpus > 0 expected, got {cfg}")
    return cfg


class JobError(RuntimeError):
    """Per-log work that failed outside the job itself: a worker or node that died, an output the driver cannot see."""


def map_jobs(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    compute: ComputeConfig | int,
    desc: str,
    progress: bool = True,
    postfix: Callable[[list[R]], dict] | None = None,
    ordered: bool = False,
    names: Sequence[str] | None = None,
    visible: Callable[[R], Iterable[Path]] | None = None,
    gpu: bool = False,
) -> list[R]:
    """``[fn(job) for job in jobs]`` on ``compute``'s backend, with a progress bar. Results come in completion order,
    or in job order with ``ordered`` (outputs never depend on the order: each job writes its own log's files).

    ``names`` name the jobs in errors (the log ids). ``visible(result)`` lists the files a job wrote that this process
    must see: on a cluster whose filesystem is not shared, a missing one is a clear error here, not a partial output
    later. ``gpu``: the stage wants a GPU per task (``compute.num_gpus`` of them on Ray). ``fn`` must be importable
    (spawned processes and Ray workers import it)."""
    if isinstance(compute, int):  # a local pool of that many processes (tools outside the DAG: the world generator)
        compute = ComputeConfig(backend="local", workers=compute)
    jobs = list(jobs)
    names = list(names) if names is not None else [str(i) for i in range(len(jobs))]
    if len(names) != len(jobs):
        raise ValueError(f"map_jobs: {len(names)} names for {len(jobs)} jobs")
    bar = progress_bar(total=len(jobs), desc=desc, unit="log", disable=not progress)
    results: list[R] = []

    def done(result: R) -> None:
        if visible is not None:
            missing = [str(p) for p in visible(result) if not Path(p).exists()]
            if missing:
                raise JobError(
                    f"{desc}: outputs a worker wrote are not visible to this process: {missing[:3]} "
                    f"({len(missing)} missing). Run on a filesystem every node shares (see docs/scaling.md)."
                )
        results.append(result)
        bar.update()
        if postfix:
            bar.set_postfix(postfix(results))

    if compute.backend == "ray":
        for result in _ray_map(fn, jobs, names, compute, gpu, ordered):
            done(result)
    elif compute.backend == "local" and compute.workers > 1 and len(jobs) > 1:
        # spawn, not fork: jobs may use torch or Embree, which are not fork-safe
        with mp.get_context("spawn").Pool(min(compute.workers, len(jobs))) as pool:
            for result in (pool.imap if ordered else pool.imap_unordered)(_Named(fn), zip(names, jobs)):
                done(result)
    else:
        for name, job in zip(names, jobs):
            done(_Named(fn)((name, job)))
    bar.close()
    return results


class _Named:
    """``fn`` on a (name, job) pair; its errors keep their type and gain a note naming the job."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, named):
        name, job = named
        try:
            return self.fn(job)
        except Exception as exc:  # the job's own error, its type kept (callers catch it), naming the log
            exc.add_note(f"in the job of log {name}")
            raise


def ray_init(compute: ComputeConfig):
    """Join the configured cluster, or ``RAY_ADDRESS``'s, or start a local one (once per process)."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("compute.backend = ray needs Ray: pip install -e '.[ray]'") from exc
    if not ray.is_initialized():
        address = compute.address or os.environ.get("RAY_ADDRESS") or None
        # the driver's import path reaches the workers: a checkout run in place (PYTHONPATH) works without installing
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}} if paths else None
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
        log.info("ray: %s", "joined " + address if address else "started a local cluster")
    return ray


def _ray_map(fn, jobs: list, names: list[str], compute: ComputeConfig, gpu: bool, ordered: bool):
    """Yield each job's result from Ray tasks, at most ``in_flight`` at once; a job's own error is not retried and is
    raised naming its log; a task whose worker died is retried ``max_retries`` times, then fails naming its log."""
    ray = ray_init(compute)
    from ray.exceptions import NodeDiedError, RayTaskError, WorkerCrashedError

    remote = ray.remote(_call).options(
        num_cpus=compute.num_cpus,
        num_gpus=compute.num_gpus if gpu else 0,
        max_retries=compute.max_retries,
        retry_exceptions=False,
    )
    in_flight = compute.workers or max(1, int(2 * ray.cluster_resources().get("CPU", 1) / compute.num_cpus))
    pending: dict = {}
    ready: dict[int, object] = {}
    next_job, next_out = 0, 0
    while next_job < len(jobs) or pending:
        while next_job < len(jobs) and len(pending) < in_flight:
            pending[remote.remote(fn, jobs[next_job])] = next_job
            next_job += 1
        finished, _ = ray.wait(list(pending), num_returns=1)
        ref = finished[0]
        index = pending.pop(ref)
        try:
            result = ray.get(ref)
        except RayTaskError as exc:  # the job's own error: re-raised as itself, naming the log
            cause = exc.cause if isinstance(exc.cause, Exception) else JobError(str(exc))
            cause.add_note(f"in the job of log {names[index]} (a Ray task)")
            raise cause from None
        except (WorkerCrashedError, NodeDiedError) as exc:
            raise JobError(
                f"log {names[index]}: its Ray worker died {compute.max_retries + 1} times ({type(exc).__name__})"
            ) from exc
        if not ordered:
            yield result
            continue
        ready[index] = result
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1


def _call(fn, job):
    return fn(job)
