"""Evaluation runs: planned with a unique key, claimed by one worker, finished with results.

A run is one (monitor, version, window, segment key, data state). Planning
inserts runs with ``ON CONFLICT DO NOTHING``; workers claim the oldest pending
run with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has one writer), so
every window is evaluated once per data state however many workers run. A
claim older than the lease is taken over (its worker died).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, select, text, update

from modelwatch.errors import NotFoundError
from modelwatch.results import MetricResult
from modelwatch.settings import ENV_RUN_LEASE_S, lease_seconds
from modelwatch.store import tables as t
from modelwatch.store.claims import claim_in
from modelwatch.store.engine import Store
from modelwatch.store.paging import keyset
from modelwatch.store.registry import ModelRecord
from modelwatch.timeutil import utcnow

__all__ = ["PlannedRun", "RunRecord", "RunStore", "WindowState", "window_states"]

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
MAX_ATTEMPTS = 3
RUN_LEASE_S = 900.0
_PLAN_CHUNK = 500  # rows per INSERT, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class PlannedRun:
    monitor_id: int
    version_id: int
    window_start_us: int
    window_end_us: int
    segment_key: str
    data_state: str
    n_events: int
    n_labels: int


@dataclass(frozen=True)
class RunRecord:
    id: int
    monitor_id: int
    version_id: int
    window_start_us: int
    window_end_us: int
    segment_key: str
    data_state: str
    status: str
    current: bool
    attempts: int
    claimed_by: str | None
    claimed_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    n_events: int
    n_labels: int
    error: str | None


def _run(row: Row[Any]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        **{k: m[k] for k in RunRecord.__dataclass_fields__ if k != "current"},
        current=bool(m["current"]),
    )


class RunStore:
    def __init__(self, store: Store, lease_s: float | None = None) -> None:
        """``lease_s``: default ``MODELWATCH_RUN_LEASE_S``, else 15 minutes."""
        self.store = store
        if lease_s is None:
            lease_s = lease_seconds(ENV_RUN_LEASE_S, RUN_LEASE_S)
        self.lease = timedelta(seconds=lease_s)

    def plan(self, runs: Sequence[PlannedRun]) -> int:
        """Insert runs not planned before; returns how many are new."""
        if not runs:
            return 0
        now = utcnow()
        rows = [
            {**r.__dict__, "status": PENDING, "current": 0, "attempts": 0, "created_at": now}
            for r in runs
        ]
        new = 0
        with self.store.write() as conn:
            for start in range(0, len(rows), _PLAN_CHUNK):
                chunk = rows[start : start + _PLAN_CHUNK]
                stmt = self.store.insert(t.evaluation_runs).values(chunk).on_conflict_do_nothing()
                # rowcount is unreliable for multi-row inserts; RETURNING lists only new rows.
                new += len(conn.execute(stmt.returning(t.evaluation_runs.c.id)).all())
        return new

    def get(self, run_id: int) -> RunRecord:
        r = t.evaluation_runs
        with self.store.read() as conn:
            row = conn.execute(select(r).where(r.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no evaluation run with id {run_id}")
        return _run(row)

    def known_keys(
        self, monitor_id: int, version_id: int, since_us: int
    ) -> set[tuple[int, str, str]]:
        """(window start, segment key, data state) of every run planned since ``since_us``."""
        r = t.evaluation_runs
        query = select(r.c.window_start_us, r.c.segment_key, r.c.data_state).where(
            r.c.monitor_id == monitor_id,
            r.c.version_id == version_id,
            r.c.window_start_us >= since_us,
        )
        with self.store.read() as conn:
            return {(a, b, c) for a, b, c in conn.execute(query)}

    def claim(self, worker: str, monitor_ids: Iterable[int] | None = None) -> RunRecord | None:
        """Take the oldest pending (or abandoned) run, or None when there is none."""
        r = t.evaluation_runs
        now = utcnow()
        abandoned = and_(r.c.status == RUNNING, r.c.claimed_at < now - self.lease)
        claimable = (r.c.status == PENDING) | and_(abandoned, r.c.attempts < MAX_ATTEMPTS)
        pick = select(r.c.id).where(claimable).order_by(r.c.window_start_us, r.c.id)
        if monitor_ids is not None:
            pick = pick.where(r.c.monitor_id.in_(list(monitor_ids)))
        with self.store.write() as conn:
            _fail_exhausted(conn, abandoned, now)
            row = claim_in(
                conn,
                self.store,
                r,
                pick,
                status=RUNNING,
                claimed_by=worker,
                claimed_at=now,
                attempts=r.c.attempts + 1,
            )
        return _run(row) if row is not None else None

    def finish(
        self, run: RunRecord, results: Sequence[tuple[str, MetricResult]], duration_ms: float
    ) -> bool:
        """Store ``(segment, result)`` pairs; the window's newest finished run is current.

        Runs of one window for different data states can finish in any order on
        different workers. Locking the window's runs first serialises their finishes,
        so exactly one run per window is current, and a run finishing after a newer
        one of its window keeps its results but not the window's current place.

        False, storing nothing, when ``run`` is no longer this claim's: its lease
        ran out and another worker took it over, which will store its own results.
        """
        r, m = t.evaluation_runs, t.metric_results
        same_window = and_(
            r.c.monitor_id == run.monitor_id,
            r.c.version_id == run.version_id,
            r.c.window_start_us == run.window_start_us,
            r.c.segment_key == run.segment_key,
        )
        with self.store.write() as conn:
            conn.execute(select(r.c.id).where(same_window).order_by(r.c.id).with_for_update())
            if not _still_claimed(conn, run):
                return False
            newer = select(r.c.id).where(same_window, r.c.id > run.id, r.c.status == DONE)
            current = conn.execute(newer.limit(1)).first() is None
            if current:
                older = select(r.c.id).where(same_window, r.c.id != run.id, r.c.current == 1)
                older_ids = [i for (i,) in conn.execute(older)]
                if older_ids:
                    conn.execute(update(r).where(r.c.id.in_(older_ids)).values(current=0))
                    conn.execute(update(m).where(m.c.run_id.in_(older_ids)).values(current=0))
            _write_results(conn, run, results, current)
            conn.execute(
                update(r)
                .where(r.c.id == run.id)
                .values(
                    status=DONE,
                    current=int(current),
                    finished_at=utcnow(),
                    duration_ms=duration_ms,
                    error=None,
                )
            )
        return True

    def fail(self, run: RunRecord, error: str) -> None:
        r = t.evaluation_runs
        status = FAILED if run.attempts >= MAX_ATTEMPTS else PENDING
        with self.store.write() as conn:
            conn.execute(
                update(r)
                .where(r.c.id == run.id, r.c.status == RUNNING, r.c.attempts == run.attempts)
                .values(status=status, error=error[:4000], finished_at=utcnow())
            )

    def running(self, monitor_ids: Iterable[int]) -> list[RunRecord]:
        """Runs of these monitors a worker holds now, oldest window first."""
        r = t.evaluation_runs
        query = select(r).where(r.c.monitor_id.in_(list(monitor_ids)), r.c.status == RUNNING)
        with self.store.read() as conn:
            return [_run(row) for row in conn.execute(query.order_by(r.c.window_start_us, r.c.id))]

    def list(
        self,
        monitor_id: int,
        limit: int | None = 50,
        status: str | None = None,
        before: int | None = None,
    ) -> list[RunRecord]:
        """A monitor's runs, newest first, older than ``before``."""
        r = t.evaluation_runs
        query = keyset(
            select(r).where(r.c.monitor_id == monitor_id), r.c.id, before, limit, newest_first=True
        )
        if status is not None:
            query = query.where(r.c.status == status)
        with self.store.read() as conn:
            return [_run(row) for row in conn.execute(query)]

    def counts(self, monitor_id: int | None = None) -> dict[str, int]:
        r = t.evaluation_runs
        query = select(r.c.status, func.count()).group_by(r.c.status)
        if monitor_id is not None:
            query = query.where(r.c.monitor_id == monitor_id)
        with self.store.read() as conn:
            return {s: int(n) for s, n in conn.execute(query)}


def _fail_exhausted(conn: Connection, abandoned: ColumnElement[bool], now: datetime) -> None:
    """Abandoned runs with no attempt left end ``failed``: no claim could ever finish them
    (a run that kills its worker every time must not be retried forever)."""
    r = t.evaluation_runs
    error = f"abandoned by its worker {MAX_ATTEMPTS} times (each lost its lease)"
    conn.execute(
        update(r)
        .where(abandoned, r.c.attempts >= MAX_ATTEMPTS)
        .values(status=FAILED, error=error, finished_at=now)
    )


def _still_claimed(conn: Connection, run: RunRecord) -> bool:
    """Whether ``run`` is still running under this claim (each claim counts an attempt)."""
    r = t.evaluation_runs
    row = conn.execute(select(r.c.status, r.c.attempts).where(r.c.id == run.id)).one()
    return bool(row.status == RUNNING and row.attempts == run.attempts)


def _write_results(
    conn: Connection, run: RunRecord, results: Sequence[tuple[str, MetricResult]], current: bool
) -> None:
    if not results:
        return
    rows = [
        {
            "run_id": run.id,
            "monitor_id": run.monitor_id,
            "version_id": run.version_id,
            "window_start_us": run.window_start_us,
            "window_end_us": run.window_end_us,
            "current": int(current),
            "segment": segment,
            "metric": res.metric,
            "column_name": res.column or "",
            "label": res.label or "",
            "value": res.value,
            "p_value": res.p_value,
            "p_adjusted": res.p_adjusted,
            "effect": res.effect,
            "band_low": res.band_low,
            "band_high": res.band_high,
            "ci_low": res.ci_low,
            "ci_high": res.ci_high,
            "threshold": res.threshold,
            "n": res.n,
            "status": res.status.value,
            "detail": res.detail,
        }
        for segment, res in results
    ]
    conn.execute(t.metric_results.insert(), rows)


@dataclass(frozen=True)
class WindowState:
    """A window's observed data: its events and joined labels, how many and newest receipt."""

    n_events: int
    events_received: int
    n_labels: int = 0
    labels_received: int = 0


def first_event_us(store: Store, model: ModelRecord, version_id: int) -> int | None:
    """When the version's first event happened (None before any), from the time index."""
    events = model.layout.events.name
    query = text(f'SELECT MIN(ts_us) FROM "{events}" WHERE version_id = :v')
    with store.read() as conn:
        first = conn.execute(query, {"v": version_id}).scalar()
    archived = None if store.cold is None else store.cold.first_event_us(model, version_id)
    known = [int(x) for x in (first, archived) if x is not None]
    return min(known) if known else None


def window_states(
    store: Store,
    model: ModelRecord,
    version_id: int,
    window_us: int,
    start: int,
    end: int,
    live_from: int,
) -> dict[int, WindowState]:
    """The data state of each ``window_us`` window in [start, end) holding events, by start.

    Windows are aligned to multiples of ``window_us``. Labels are counted only for
    windows from ``live_from`` on (the others are 0).
    """
    events, labels = model.layout.events.name, model.layout.labels.name
    params = {"v": version_id, "w": window_us, "start": start, "end": end, "live": live_from}
    by_events = text(
        f'SELECT ts_us / :w AS k, COUNT(*), MAX(received_us) FROM "{events}" '
        "WHERE version_id = :v AND ts_us >= :start AND ts_us < :end GROUP BY ts_us / :w"
    )
    by_labels = text(
        f'SELECT e.ts_us / :w AS k, COUNT(*), MAX(l.received_us) FROM "{events}" e '
        f'JOIN "{labels}" l ON l.request_id = e.request_id '
        "WHERE e.version_id = :v AND e.ts_us >= :live AND e.ts_us < :end GROUP BY e.ts_us / :w"
    )
    with store.read() as conn:
        rows = conn.execute(by_events, params).all()
        label_rows = conn.execute(by_labels, params).all() if live_from < end else []
    labelled = {int(k): (int(n), int(r)) for k, n, r in label_rows}
    counts = {int(k): (int(n), int(r)) for k, n, r in rows}
    if store.cold is not None:
        archived = store.cold.window_counts(model, version_id, window_us, start, end)
        counts = _with_archived(counts, archived)
    states: dict[int, WindowState] = {}
    for k, (n, received) in counts.items():
        nl, lr = labelled.get(k, (0, 0))
        states[k * window_us] = WindowState(n, received, nl, lr)
    return states


def _with_archived(
    hot: dict[int, tuple[int, int]], archived: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Hot and archived counts of each window: the larger of the two. A day is in both
    between its archiving and its deletion (the same rows twice), and in one of them
    before and after, so the larger count is the window's own except while retention
    deletes a window's first day of several (then the window may be planned once more,
    and evaluates to the same values)."""
    merged = dict(hot)
    for k, (n, received) in archived.items():
        n_hot, received_hot = merged.get(k, (0, 0))
        merged[k] = (max(n, n_hot), max(received, received_hot))
    return merged
