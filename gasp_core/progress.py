"""Progress that suits where the output goes: a tqdm bar on a terminal, a log line every few seconds elsewhere.

A bar redraws itself with carriage returns, which a log file (``make demo > demo.log``, CI, a Dagster run) keeps
as hundreds of lines per stage. Off a terminal, :func:`progress` logs one line per ``GASP_LOG_EVERY_S`` seconds
(default 30) and one at the end: what was done, of how many, the rate, the time left and the latest postfix.
``GASP_PROGRESS=bar`` or ``=log`` forces either.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("gasp_core.progress")


def _on_terminal() -> bool:
    forced = os.environ.get("GASP_PROGRESS", "").lower()
    if forced in ("bar", "log"):
        return forced == "bar"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """The subset of tqdm's interface the pipeline uses, logging instead of drawing."""

    def __init__(
        self, iterable: Iterable | None, total: int | None, desc: str, unit: str, every_s: float, leave: bool = True
    ) -> None:
        self.iterable, self.desc, self.unit, self.every_s, self.leave = iterable, desc, unit, every_s, leave
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.postfix = total, 0, ""
        self.start = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        left = ""
        if self.total and rate > 0 and self.n < self.total:
            left = f", {(self.total - self.n) / rate:.0f} s left"
        speed = f"{rate:.2f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/{self.unit}"
        tail = f" [{self.postfix}]" if self.postfix else ""
        return f"{self.desc}: {self.n}{of} {self.unit} in {elapsed:.0f} s ({speed}{left}){tail}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info(self.line())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.leave:
                log.info(self.line())


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    every_s: float | None = None,
):
    """A tqdm bar on a terminal; a :class:`LogProgress` (a line every ``every_s`` s) otherwise; nothing when
    ``disable``. Use it as tqdm: iterate it, or ``update()`` / ``set_postfix()`` / ``close()`` it."""
    from tqdm import tqdm

    if disable:
        return tqdm(iterable, total=total, disable=True)
    if _on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave)
    every = float(os.environ.get("GASP_LOG_EVERY_S", "30")) if every_s is None else every_s
    return LogProgress(iterable, total, desc, unit, every, leave)
