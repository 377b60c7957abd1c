"""One writer per run directory: an advisory lock held for the life of a `gem run`."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """Another process is running in this run directory."""


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's lock; raise RunDirBusy at once when another process holds it.

    The kernel drops the lock when its holder dies (even by SIGKILL), so a killed run never
    leaves a stale lock behind.
    """
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunDirBusy(f"{run_dir}: another gem run is using this run directory") from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
