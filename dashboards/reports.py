"""Drill-down reports: generated off the request path in a small thread pool, cached on disk.

A report is keyed by its run id and the window's observed data state
(:func:`dashboards.report_data.find_target`), so a window whose events or labels
changed gets a fresh one, and cached as ``run-<id>-<state>.html`` in the report
directory (older files of the same run are removed). At most one generation per
run id runs at a time however many requests ask. A failed generation is logged
and recorded; the next request for that report answers with its cause, and the
one after that tries again. Generation never raises into the host process.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dashboards.report_data import ReportFrames, ReportTarget, find_target, load_frames
from dashboards.report_render import render_report
from modelwatch.errors import ModelwatchError
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry

__all__ = [
    "REPORT_WORKERS",
    "Renderer",
    "ReportFailed",
    "ReportService",
    "ReportStatus",
]

log = logging.getLogger(__name__)

REPORT_WORKERS = 2  # evidently is CPU- and memory-hungry; reports wait rather than pile up
MAX_FAILURES = 1000  # failures remembered until asked for; the oldest are forgotten first

Renderer = Callable[[ReportTarget, ReportFrames], str]


class ReportFailed(ModelwatchError):
    """Generating a report failed; the message names the cause."""

    status_code = 500
    code = "report_failed"


@dataclass(frozen=True)
class ReportStatus:
    """Where a report stands: ``ready`` (with its HTML), ``generating`` (with the
    generation to wait for, whose result is its error or None) or ``failed``."""

    run_id: int
    state_key: str
    state: Literal["ready", "generating", "failed"]
    html: bytes = b""
    error: str = ""
    pending: Future[str | None] | None = None


class ReportService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        directory: str | os.PathLike[str],
        max_rows: int,
        *,
        workers: int = REPORT_WORKERS,
        render: Renderer = render_report,
    ) -> None:
        self.store = store
        self.registry = registry
        self.directory = Path(directory)
        self.max_rows = max_rows
        self.render = render
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, Future[str | None]]] = {}
        self._failed: dict[tuple[int, str], str] = {}

    def request(self, run_id: int) -> ReportStatus:
        """The cached report, or the generation that makes it (started if none runs).

        Raises NotFoundError for an unknown run. Cheap: a few indexed queries.
        """
        target = find_target(self.store, self.registry, run_id)
        key = target.state_key
        path = self._path(run_id, key)
        html = _read(path)
        if html is not None:
            return ReportStatus(run_id, key, "ready", html=html)
        with self._lock:
            running = self._running.get(run_id)
            if running is not None:
                return ReportStatus(run_id, running[0], "generating", pending=running[1])
            error = self._failed.pop((run_id, key), None)
            if error is not None:
                return ReportStatus(run_id, key, "failed", error=error)
            html = _read(path)  # finished between the first look and the lock
            if html is not None:
                return ReportStatus(run_id, key, "ready", html=html)
            future = self._pool().submit(self._generate, target, path)
            self._running[run_id] = (key, future)
        return ReportStatus(run_id, key, "generating", pending=future)

    def running(self, run_id: int) -> Future[str | None] | None:
        """The generation under way for ``run_id``, if any (its result: the error or None)."""
        with self._lock:
            running = self._running.get(run_id)
        return running[1] if running else None

    def forget_failure(self, run_id: int, state_key: str) -> None:
        """A failure already answered (to a request that waited for it): retry next time."""
        with self._lock:
            self._failed.pop((run_id, state_key), None)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # --- generation ---------------------------------------------------------------------
    def _generate(self, target: ReportTarget, path: Path) -> str | None:
        """Runs in the pool; returns the error, or None once the report is on disk."""
        run_id = target.run.id
        error: str | None = None
        try:
            frames = load_frames(self.store, target, self.max_rows)
            _write(path, self.render(target, frames))
            _remove_older(path, run_id)
            log.info("report for run %s generated (%s)", run_id, path.name)
        except Exception as exc:  # background work logs and records, never raises
            log.exception("generating the report for run %s failed", run_id)
            error = f"generating the report for run {run_id} failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._running.pop(run_id, None)
            if error is not None:
                if len(self._failed) >= MAX_FAILURES:
                    self._failed.pop(next(iter(self._failed)))
                self._failed[(run_id, target.state_key)] = error
        return error

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="mw-report")
        return self._executor

    def _path(self, run_id: int, state_key: str) -> Path:
        return self.directory / f"run-{run_id}-{state_key}.html"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, page: str) -> None:
    """Write whole or not at all: readers (other threads, other replicas) never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _remove_older(path: Path, run_id: int) -> None:
    for old in path.parent.glob(f"run-{run_id}-*.html"):
        if old != path:
            old.unlink(missing_ok=True)
