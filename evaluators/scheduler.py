"""Background evaluation: APScheduler plans each monitor on its schedule; a drain thread
evaluates the runs.

Runs in ``modelwatch serve`` and ``modelwatch worker``. Several processes may
share one PostgreSQL store: planning is idempotent (unique run keys) and runs
are claimed with ``FOR UPDATE SKIP LOCKED``, so each is evaluated once. Every
job logs and records its failures and never raises into the host process.

Planning and evaluating are apart: a tick only plans (quick), then wakes the drain
thread, which evaluates until nothing is pending. So a long evaluation never holds
a monitor's tick (which APScheduler would skip while its previous run is still
going) and never delays the planning of other monitors.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evaluators.planner import Planner
from evaluators.runner import Runner
from evaluators.windows import US
from modelwatch.durations import parse_duration
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorRecord, MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.runs import RunRecord, RunStore
from modelwatch.timeutil import utcnow

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

__all__ = ["EvaluationService", "SchedulerState", "worker_name"]

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class SchedulerState:
    """What the scheduler has done, for health pages and metrics."""

    running: bool = False
    planned: int = 0
    evaluated: int = 0
    failed: int = 0
    last_plan_at: float | None = None
    last_run_at: float | None = None
    last_error: str | None = None
    monitors: list[str] = field(default_factory=list)


class EvaluationService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        worker: str | None = None,
        clock: Callable[[], float] = time.time,
        drain_interval_s: float = 5.0,
        sync_interval_s: float = 30.0,
        drain_budget_s: float = 20.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.monitors = MonitorStore(store, registry)
        self.runs = RunStore(store)
        self.planner = Planner(store, registry, self.runs)
        self.runner = Runner(store, registry, worker or worker_name())
        self.state = SchedulerState()
        self.drain_interval_s = drain_interval_s
        self.sync_interval_s = sync_interval_s
        self.drain_budget_s = drain_budget_s
        self._scheduler: BackgroundScheduler | None = None
        self._schedules: dict[int, str] = {}
        self._drain_lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._drainer: threading.Thread | None = None
        self._extra_jobs: list[tuple[Callable[[], object], float, str]] = []

    def add_job(self, fn: Callable[[], object], every_s: float, job_id: str) -> None:
        """Run ``fn`` every ``every_s`` seconds on this scheduler (e.g. alerting)."""
        self._extra_jobs.append((fn, every_s, job_id))
        if self._scheduler is not None:
            self._scheduler.add_job(fn, _every(every_s), id=job_id)

    # --- work ----------------------------------------------------------------
    def plan(self, monitor: MonitorRecord, since_us: int | None = None) -> int:
        """Plan ``monitor``'s runs now; logs and returns 0 on failure."""
        try:
            n = self.planner.plan(monitor, int(self.clock() * US), since_us)
        except Exception as exc:
            log.exception("planning monitor %r failed", monitor.name)
            self.state.last_error = f"plan {monitor.name}: {exc}"
            return 0
        self.state.planned += n
        self.state.last_plan_at = self.clock()
        return n

    def run_one(self, monitor_ids: list[int] | None = None) -> RunRecord | None:
        try:
            run = self.runner.run_next(monitor_ids)
        except Exception as exc:  # the store may be down; try again on the next tick
            log.exception("claiming an evaluation run failed")
            self.state.last_error = f"run: {exc}"
            return None
        if run is not None:
            self.state.evaluated += 1
            self.state.last_run_at = self.clock()
        return run

    def drain(self, budget_s: float | None = None) -> int:
        """Evaluate pending runs, oldest first, for up to ``budget_s`` seconds."""
        if not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            deadline = time.monotonic() + (budget_s or self.drain_budget_s)
            done = 0
            while (
                not self._stopping.is_set()
                and time.monotonic() < deadline
                and self.run_one() is not None
            ):
                done += 1
            return done
        finally:
            self._drain_lock.release()

    def tick(self, monitor_id: int) -> None:
        """Plan one monitor; new runs wake the drain thread (or, without one, drain here)."""
        try:
            monitor = self.monitors.get(monitor_id)
        except Exception:
            log.exception("loading monitor %s failed", monitor_id)
            return
        if self.plan(monitor):
            if self._drainer is None:
                self.drain()
            else:
                self._wake.set()

    def _drain_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                done = self.drain()
            except Exception:  # never reached: drain logs its own failures
                log.exception("draining evaluation runs failed")
                done = 0
            if done == 0:  # nothing pending: wait for new runs, or look again later
                self._wake.wait(self.drain_interval_s)
                self._wake.clear()

    # --- scheduling ----------------------------------------------------------
    def start(self) -> None:
        # APScheduler is loaded only by processes that schedule: `modelwatch evaluate`
        # plans and runs with the same code and starts faster without it.
        from apscheduler.schedulers.background import BackgroundScheduler

        self._stopping.clear()
        scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
        )
        scheduler.add_job(self.sync, _every(self.sync_interval_s), id="sync")
        for fn, every_s, job_id in self._extra_jobs:
            scheduler.add_job(fn, _every(every_s), id=job_id)
        scheduler.start()
        self._scheduler = scheduler
        self._drainer = threading.Thread(target=self._drain_loop, name="drain", daemon=True)
        self._drainer.start()
        self.state.running = True
        self.sync()

    def sync(self) -> None:
        """Make the scheduler's jobs match the monitors in the store."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        try:
            monitors = self.monitors.list()
        except Exception:
            log.exception("listing monitors failed")
            return
        seen = set()
        for monitor in monitors:
            seen.add(monitor.id)
            if self._schedules.get(monitor.id) == monitor.spec.schedule:
                continue
            # A new monitor is planned at once; a changed one keeps its trigger's next time.
            # (APScheduler treats next_run_time=None as "paused", so it is only ever a time.)
            first = {} if monitor.id in self._schedules else {"next_run_time": utcnow()}
            scheduler.add_job(
                self.tick,
                _trigger(monitor.spec.schedule),
                args=[monitor.id],
                id=f"monitor:{monitor.id}",
                replace_existing=True,
                **first,
            )
            self._schedules[monitor.id] = monitor.spec.schedule
        for gone in set(self._schedules) - seen:
            scheduler.remove_job(f"monitor:{gone}")
            del self._schedules[gone]
        self.state.monitors = sorted(m.name for m in monitors)

    def shutdown(self) -> None:
        self._stopping.set()  # a drain in progress stops after its current run
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._drainer is not None:
            self._drainer.join()
            self._drainer = None
        self.state.running = False


def _every(seconds: float) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=seconds)


def _trigger(schedule: str) -> Any:
    if len(schedule.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(schedule, timezone="UTC")
    return _every(parse_duration(schedule))
