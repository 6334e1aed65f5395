"""One SQLite writer at a time, across the threads and the processes of one host.

SQLite admits one writer per database file. Its own busy handler makes a blocked
writer sleep (1 ms, then up to 100 ms) and try again, so writers from several
processes (``serve --workers N``, ``modelwatch import`` beside a running service)
lose most of their time asleep while the file is free. Writers instead queue on
an advisory ``flock`` of a file beside the database, which wakes the next one the
moment the lock is released, and on a mutex within the process, since ``flock``
locks belong to the open file and threads share it.

Waiting is bounded (by the statement timeout, see ``Timeouts.sqlite_write_wait_s``):
a writer that cannot take the lock in time fails with a StoreError (the API
answers 503) instead of queueing forever behind a stuck one. ``flock`` cannot
time out, so a writer that finds the file locked waits on a helper thread
blocked in ``flock`` on a descriptor of its own; when the writer gives up, the
next writer of the process inherits that helper (at most one per process), and a
helper left without a writer releases the lock
the moment it gets it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from modelwatch.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler is all there is
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_SUFFIX", "WriteLock", "lock_path"]

LOCK_SUFFIX = ".write-lock"
DEFAULT_TIMEOUT_S = 5.0


def lock_path(database: str | None) -> Path | None:
    """The lock file of the SQLite database at ``database``; None when it has no file."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + LOCK_SUFFIX)


class WriteLock:
    """A context manager: the thread holds the process's mutex and the file's ``flock``."""

    def __init__(self, path: Path | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path if fcntl is not None else None
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()
        self._waiter: _Waiter | None = None
        self._held: _Waiter | None = None

    def __enter__(self) -> WriteLock:
        deadline = time.monotonic() + self.timeout_s
        if not self._mutex.acquire(timeout=self.timeout_s):
            raise self._timed_out()
        try:
            fd = self._file()
            if fd is not None and not self._flock(fd, deadline):
                raise self._timed_out()
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
            if self._held is not None:
                self._held.release()
                self._held = None
            elif self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _flock(self, fd: int, deadline: float) -> bool:
        """Take the file's lock before ``deadline`` (the caller holds the mutex)."""
        while True:
            if self._waiter is not None and self._waiter.dead:
                self._waiter = None  # it got the lock while no writer waited, and let go
            if self._waiter is None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                assert self.path is not None
                self._waiter = _Waiter(self.path)
            waiter = self._waiter
            if waiter.wait(deadline - time.monotonic()):
                self._waiter, self._held = None, waiter
                return True
            if time.monotonic() >= deadline:
                return False

    def _timed_out(self) -> StoreError:
        return StoreError(
            f"the SQLite write lock {self.path} was not free within {self.timeout_s:g}s"
        )

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


class _Waiter:
    """A thread blocked in ``flock`` on a descriptor of its own, for a writer that can
    stop waiting: if no writer is waiting when the lock comes, it is released at once."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._state = threading.Condition()
        self._waiting = True  # its creator waits on it next
        self._locked = False
        self.dead = False
        self.error: OSError | None = None
        threading.Thread(target=self._run, name="mw-sqlite-flock", daemon=True).start()

    def wait(self, seconds: float) -> bool:
        """Claim the lock if it comes within ``seconds``; False if it did not."""
        with self._state:
            self._waiting = True
            try:
                self._state.wait_for(lambda: self._locked or self.dead, max(0.0, seconds))
            finally:
                self._waiting = False
            if self.error is not None:
                raise self.error
            return self._locked

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)

    def _run(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            with self._state:
                self.error, self.dead = exc, True
                self._state.notify_all()
            os.close(self._fd)
            return
        with self._state:
            if self._waiting:
                self._locked = True
                self._state.notify_all()
                return
            self.dead = True
        self.release()
