"""Input errors that name the log and the file, so a user knows exactly what to fix."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input that stops a log: names the log, the file and what was wrong."""

    def __init__(self, log_id: str, file: Path | str, problem: str) -> None:
        self.log_id, self.file, self.problem = log_id, str(file), problem
        super().__init__(f"log {log_id}: {file}: {problem}")

    def __reduce__(self):  # keep the fields across process boundaries
        return (type(self), (self.log_id, self.file, self.problem))


class BadSweepError(InputError):
    """One unusable lidar sweep; the ingest config decides whether it stops the log or is skipped."""
