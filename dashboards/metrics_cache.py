"""How old the exporter's figures may be: a scrape never waits for an expensive section.

Most sections of a scrape read a few rows and are read on every scrape. A section whose
last read took longer than ``inline_budget_s`` (the stored-volume counts, which grow with
the history kept) is served from its last read instead, and read again in a background
thread once its figures are older than ``cost_factor`` times that read's duration (and
at least ``min_age_s``). So a scrape answers in milliseconds whatever the store holds,
the section costs at most about 1/``cost_factor`` of one core, and a small store is read
fresh on every scrape, as before. Each section's age is exported with the figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["SectionCache", "SectionRead"]

log = logging.getLogger(__name__)

Build = Callable[[], Iterable[Metric]]


@dataclass(frozen=True)
class SectionRead:
    """One read of a section: its families (``None`` when the read failed), when it
    finished (monotonic seconds) and how long it took."""

    families: list[Metric] | None
    finished: float
    duration: float


def _spawn(name: str, work: Callable[[], None]) -> None:
    threading.Thread(target=work, name=f"metrics-{name}", daemon=True).start()


class SectionCache:
    """Reads each section inline while it is cheap, else serves its last read."""

    def __init__(
        self,
        *,
        inline_budget_s: float = 0.25,
        cost_factor: float = 10.0,
        min_age_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[str, Callable[[], None]], None] = _spawn,
    ) -> None:
        self.inline_budget_s = inline_budget_s
        self.cost_factor = cost_factor
        self.min_age_s = min_age_s
        self.clock = clock
        self.spawn = spawn
        self._reads: dict[str, SectionRead] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def get(self, name: str, build: Build) -> tuple[list[Metric] | None, float]:
        """The section's families and their age in seconds (0 when read now)."""
        with self._lock:
            last = self._reads.get(name)
            inline = last is None or last.duration < self.inline_budget_s
            if not inline and last is not None and self._due(last) and name not in self._refreshing:
                self._refreshing.add(name)
                self.spawn(name, lambda: self._refresh(name, build))
        if inline:
            return self._read(name, build).families, 0.0
        assert last is not None
        return last.families, max(0.0, self.clock() - last.finished)

    def ages(self) -> Iterator[Metric]:
        """``modelwatch_metrics_section_age_seconds{section}`` of the sections served from
        an earlier read (a section read during the scrape is 0)."""
        family = GaugeMetricFamily(
            "modelwatch_metrics_section_age_seconds",
            "How old a section's figures are: 0 when read during this scrape, else the age "
            "of the last background read of a section too slow to read on every scrape.",
            labels=["section"],
        )
        now = self.clock()
        with self._lock:
            reads = sorted(self._reads.items())
        for name, read in reads:
            slow = read.duration >= self.inline_budget_s
            family.add_metric([name], max(0.0, now - read.finished) if slow else 0.0)
        yield family

    def _due(self, last: SectionRead) -> bool:
        return self.clock() - last.finished >= max(self.min_age_s, self.cost_factor * last.duration)

    def _read(self, name: str, build: Build) -> SectionRead:
        started = self.clock()
        try:
            families: list[Metric] | None = list(build())
        except Exception:  # a scrape must answer; the failure shows as store_up 0
            log.exception("reading the %s metrics failed", name)
            families = None
        finished = self.clock()
        read = SectionRead(families, finished, finished - started)
        with self._lock:
            self._reads[name] = read
        return read

    def _refresh(self, name: str, build: Build) -> None:
        try:
            self._read(name, build)
        finally:
            with self._lock:
                self._refreshing.discard(name)
