"""The spill directory: batches the client could not deliver in time, kept on disk.

One file per batch, named so that names sort oldest first
(``<unix ns>-<pid>-<seq>.jsonl``). Line 1 is a header naming the endpoint,
model and version; every further line is one item exactly as it is sent.
A file is written under a hidden temporary name, fsync'd and renamed into
place, so a reader sees whole files only.

Any client using the directory, in this process or a later one, sends the
files oldest first. It holds an exclusive ``flock`` on a file while sending
it, so processes sharing a directory never send the same file twice; once
the service acknowledges the batch the file is deleted, or rewritten without
the acknowledged or rejected items. A line without its newline (a write
torn by a crash or a full disk) or that is not JSON is skipped and counted.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from collector.sdk._http import LIST_KEYS, BatchKey

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one client per directory
    fcntl = None  # type: ignore[assignment]

__all__ = ["SpillFile", "Spool"]

logger = logging.getLogger("modelwatch.sdk")

SUFFIX = ".jsonl"
_STALE_TEMP_S = 3600.0


@dataclass
class SpillFile:
    """A claimed file: locked by us until :meth:`Spool.settle` or :meth:`Spool.release`."""

    path: Path
    fd: int
    key: BatchKey
    pieces: list[list[bytes]] = field(default_factory=list)
    """what is left to send, one request each (more than one after a 413 split)"""


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if not max_bytes > 0:
            raise ValueError(f"max_spill_bytes must be positive, got {max_bytes!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._known: list[str] = []
        self._remove_stale_temporaries()
        self.refresh()

    # --- finding files -------------------------------------------------------------

    def _names(self) -> list[str]:
        try:
            return sorted(
                n for n in os.listdir(self.directory) if n.endswith(SUFFIX) and n[0] != "."
            )
        except OSError as exc:
            logger.warning(
                "modelwatch: cannot read the spill directory %s: %s", self.directory, exc
            )
            return []

    def refresh(self) -> None:
        """Look for files again (other processes may have spilled meanwhile)."""
        names = self._names()
        with self._lock:
            self._known = names

    @property
    def backlog(self) -> int:
        """Files known and not yet tried by this client."""
        with self._lock:
            return len(self._known)

    def used_bytes(self) -> int:
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    try:
                        total += entry.stat().st_size
                    except OSError:
                        continue
        except OSError:
            return self.max_bytes
        return total

    def _remove_stale_temporaries(self) -> None:
        cutoff = time.time() - _STALE_TEMP_S
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
                    if temporary and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
        except OSError:
            logger.debug("modelwatch: could not clean the spill directory", exc_info=True)

    # --- writing -------------------------------------------------------------------

    def write(self, batches: Sequence[tuple[BatchKey, Sequence[bytes]]]) -> list[str]:
        """Spill each batch; per batch "" when written, else the drop reason."""
        results: list[str] = []
        written: list[str] = []
        used = self.used_bytes()
        for key, items in batches:
            data = _encode(key, items)
            if used + len(data) > self.max_bytes:
                results.append("spill_full")
                continue
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq) % 10**6:06d}{SUFFIX}"
            try:
                fd = self._write_temp(name, data)
                os.close(fd)
                os.replace(self._temp(name), self.directory / name)
            except OSError as exc:
                logger.warning("modelwatch: cannot write the spill file %s: %s", name, exc)
                _unlink(self._temp(name))
                results.append("spill_error")
                continue
            used += len(data)
            written.append(name)
            results.append("")
        if written:
            self._sync_directory()
            with self._lock:
                for name in written:
                    bisect.insort(self._known, name)
        return results

    def _temp(self, name: str) -> Path:
        return self.directory / f".{name}.tmp"

    def _write_temp(self, name: str, data: bytes) -> int:
        fd = os.open(self._temp(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # pragma: no cover - e.g. Windows
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)

    # --- sending -------------------------------------------------------------------

    def claim(self) -> tuple[SpillFile | None, int]:
        """The oldest file no one else is sending, and the count of unreadable lines seen."""
        corrupt = 0
        while True:
            with self._lock:
                if not self._known:
                    return None, corrupt
                name = self._known.pop(0)
            path = self.directory / name
            fd = _open_locked(path)
            if fd is None:
                continue
            try:
                key, items, bad = _decode(_read(fd))
            except OSError as exc:
                logger.warning("modelwatch: cannot read the spill file %s: %s", path, exc)
                os.close(fd)
                continue
            corrupt += bad
            if key is None:
                logger.warning("modelwatch: spill file %s is unreadable; renamed *.corrupt", path)
                _rename(path, path.with_suffix(".corrupt"))
                os.close(fd)
                continue
            if not items:
                _unlink(path)
                os.close(fd)
                continue
            return SpillFile(path, fd, key, [items]), corrupt

    def settle(self, file: SpillFile, replacement: list[list[bytes]], changed: bool) -> bool:
        """Replace the piece just tried by ``replacement``; True once the file is done."""
        file.pieces[:1] = replacement
        if not file.pieces:
            _unlink(file.path)
            self.release(file)
            return True
        if changed:
            self._rewrite(file)
        return False

    def _rewrite(self, file: SpillFile) -> None:
        name = file.path.name
        data = _encode(file.key, [item for piece in file.pieces for item in piece])
        try:
            fd = self._write_temp(name, data)
        except OSError as exc:  # the old file still holds these items and more
            logger.warning("modelwatch: cannot rewrite the spill file %s: %s", file.path, exc)
            _unlink(self._temp(name))
            return
        _lock(fd)  # before the rename, so no other process can claim the new file
        try:
            os.replace(self._temp(name), file.path)
        except OSError as exc:
            logger.warning("modelwatch: cannot rewrite the spill file %s: %s", file.path, exc)
            os.close(fd)
            _unlink(self._temp(name))
            return
        os.close(file.fd)
        file.fd = fd
        self._sync_directory()

    def release(self, file: SpillFile) -> None:
        """Stop sending ``file``, leaving it for a later attempt or another client."""
        with contextlib.suppress(OSError):
            os.close(file.fd)

    def forget(self, file: SpillFile) -> None:
        """In a forked child: close our copy of the descriptor; the parent keeps the lock."""
        self.release(file)

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def _encode(key: BatchKey, items: Sequence[bytes]) -> bytes:
    path, model, version = key
    head = orjson.dumps({"modelwatch_spill": 1, "path": path, "model": model, "version": version})
    return head + b"\n" + b"".join(item + b"\n" for item in items)


def _decode(data: bytes) -> tuple[BatchKey | None, list[bytes], int]:
    """The key, the good items and the count of unreadable ones."""
    lines = data.split(b"\n")
    torn = 1 if lines.pop().strip() else 0
    if not lines:
        return None, [], torn
    key = _header(lines[0])
    if key is None:
        return None, [], torn + sum(1 for line in lines[1:] if line.strip())
    items: list[bytes] = []
    corrupt = torn
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            corrupt += 1
        else:
            items.append(line)
    return key, items, corrupt


def _header(line: bytes) -> BatchKey | None:
    try:
        head = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(head, dict) or head.get("modelwatch_spill") != 1:
        return None
    path, model, version = head.get("path"), head.get("model"), head.get("version")
    if path not in LIST_KEYS or not isinstance(model, str):
        return None
    if not (version is None or isinstance(version, str)):
        return None
    return path, model, version


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _open_locked(path: Path) -> int | None:
    """An fd holding the lock on ``path``; None if it is gone or another client has it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        # Locked, and still the file at that name: not deleted or replaced meanwhile.
        if _lock(fd) and os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _read(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("modelwatch: cannot delete the spill file %s: %s", path, exc)


def _rename(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError:  # pragma: no cover
        _unlink(src)
