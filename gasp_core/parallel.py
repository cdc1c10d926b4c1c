"""Run one function over many logs in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable
from typing import TypeVar

from gasp_core.progress import progress as progress_bar

J = TypeVar("J")
R = TypeVar("R")


def map_jobs(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    workers: int,
    desc: str,
    progress: bool = True,
    postfix: Callable[[list[R]], dict] | None = None,
    ordered: bool = False,
) -> list[R]:
    """``[fn(job) for job in jobs]``, in ``workers`` spawned processes when > 1.

    Results come in completion order, or in job order with ``ordered``.

    Spawn, not fork: workers may use torch or Embree, which are not fork-safe. ``fn`` must be importable.
    """
    jobs = list(jobs)
    results: list[R] = []
    bar = progress_bar(total=len(jobs), desc=desc, unit="log", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(fn(job))
            bar.update()
            if postfix:
                bar.set_postfix(postfix(results))
    else:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for res in (pool.imap if ordered else pool.imap_unordered)(fn, jobs):
                results.append(res)
                bar.update()
                if postfix:
                    bar.set_postfix(postfix(results))
    bar.close()
    return results
