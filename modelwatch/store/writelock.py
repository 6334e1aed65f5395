"""One SQLite writer at a time, across the threads and the processes of one host.

SQLite admits one writer per database file. Its own busy handler makes a blocked
writer sleep (1 ms, then up to 100 ms) and try again, so writers from several
processes (``serve --workers N``, ``modelwatch import`` beside a running service)
lose most of their time asleep while the file is free. Writers instead queue on
an advisory ``flock`` of a file beside the database, which wakes the next one the
moment the lock is released, and on a mutex within the process, since ``flock``
locks belong to the open file and threads share it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

from modelwatch.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler is all there is
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_SUFFIX", "WriteLock", "lock_path"]

LOCK_SUFFIX = ".write-lock"


def lock_path(database: str | None) -> Path | None:
    """The lock file of the SQLite database at ``database``; None when it has no file."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + LOCK_SUFFIX)


class WriteLock:
    """A context manager: the thread holds the process's mutex and the file's ``flock``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path if fcntl is not None else None
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    def __enter__(self) -> WriteLock:
        self._mutex.acquire()
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._mutex.release()
            raise StoreError(f"cannot take the SQLite write lock {self.path}: {exc}") from exc
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        # First use, or a forked child: a descriptor of its own, so its lock is its own.
        self._pid = os.getpid()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
