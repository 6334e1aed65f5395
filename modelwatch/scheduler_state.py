"""The scheduler's state, shared with the API processes that do not run it.

``modelwatch serve --workers N`` evaluates in its parent process while N worker
processes answer HTTP, ``/metrics`` among it. The parent publishes its
:class:`~evaluators.scheduler.SchedulerState` to a small JSON file every second
(written whole, then renamed into place, so a reader never sees half of it), and
each worker reads it when scraped, so Prometheus sees the one scheduler whichever
worker answers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from evaluators.scheduler import SchedulerState

__all__ = ["PUBLISH_INTERVAL_S", "SchedulerStateFile", "publish_state", "read_state"]

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0


def publish_state(state: SchedulerState, path: Path) -> None:
    """Write ``state`` to ``path`` atomically; logs and never raises (a scheduler job)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(dataclasses.asdict(state)))
        os.replace(tmp, path)
    except OSError:
        log.exception("publishing the scheduler state to %s failed", path)


def read_state(path: Path) -> SchedulerState | None:
    """The state last published at ``path``; None before the first, or if unreadable."""
    try:
        doc = json.loads(path.read_text())
        return SchedulerState(**doc)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        log.warning("unreadable scheduler state at %s", path, exc_info=True)
        return None


class SchedulerStateFile:
    """Reads the published state, at most once per ``max_age_s`` (scrapes come in bursts)."""

    def __init__(self, path: Path, max_age_s: float = PUBLISH_INTERVAL_S / 2) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self._read_at = -float("inf")
        self._state: SchedulerState | None = None

    def __call__(self) -> SchedulerState | None:
        now = time.monotonic()
        if now - self._read_at >= self.max_age_s:
            self._state = read_state(self.path)
            self._read_at = now
        return self._state
