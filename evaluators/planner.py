"""Planning: which (version, window, segment key) needs a run for its current data state.

A window's data state is its event count and newest receipt time, plus, until
the monitor's label delay has passed, the same for its joined labels. A new
state means a new run (late events or labels re-evaluate the window); after
the label delay a window that has been evaluated once is final. Missed windows
back to ``backfill`` are planned too, and workers take them oldest first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text

from evaluators.windows import US, align, closed_before
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorRecord
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.store.runs import PlannedRun, RunStore

__all__ = ["Planner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _WindowState:
    n_events: int
    events_received: int
    n_labels: int = 0
    labels_received: int = 0


class Planner:
    def __init__(self, store: Store, registry: Registry, runs: RunStore) -> None:
        self.store = store
        self.registry = registry
        self.runs = runs

    def plan(self, monitor: MonitorRecord, now_us: int, since_us: int | None = None) -> int:
        """Plan every run ``monitor`` needs up to ``now_us``; returns how many are new."""
        spec = monitor.spec
        model = self.registry.get_model(spec.model)
        end = closed_before(now_us, spec.window)
        start = align(
            since_us if since_us is not None else now_us - spec.backfill * US, spec.window
        )
        # Windows ending within the label delay still take labels: they are "live".
        live_after = now_us - spec.label_delay * US
        planned: list[PlannedRun] = []
        for version in self._versions(model, monitor):
            planned += self._plan_version(
                monitor, model, version, start, end, live_after, now_us - spec.backfill * US
            )
        return self.runs.plan(planned)

    def _versions(self, model: ModelRecord, monitor: MonitorRecord) -> list[VersionRecord]:
        versions = self.registry.list_versions(model)
        wanted = monitor.spec.versions
        return [v for v in versions if wanted is None or v.version in wanted]

    def _plan_version(
        self,
        monitor: MonitorRecord,
        model: ModelRecord,
        version: VersionRecord,
        start: int,
        end: int,
        live_after: int,
        empty_after: int,
    ) -> list[PlannedRun]:
        if end <= start:
            return []
        window_us = monitor.spec.window * US
        live_from = max(start, align(live_after, monitor.spec.window) - window_us)
        states = self._states(model, version.id, window_us, start, end, live_from)
        if not states:
            return []
        known = self.runs.known_keys(monitor.id, version.id, start)
        evaluated = {(w, seg) for w, seg, _ in known}
        first = min(states)
        out: list[PlannedRun] = []
        # Versions with an alias are serving: a window without traffic is news (volume 0).
        # Empty windows are planned only within the backfill horizon, even when
        # --since reaches further back: they exist to flag traffic that stopped.
        windows = sorted(states)
        if version.alias:
            empty_from = max(first, align(empty_after, monitor.spec.window))
            windows = sorted(set(windows) | set(range(empty_from, end, window_us)))
        for w in windows:
            state = states.get(w, _WindowState(0, 0))
            live = w + window_us > live_after
            key = f"e{state.n_events}.{state.events_received}"
            if live:
                key += f".l{state.n_labels}.{state.labels_received}"
            for seg in ["", *monitor.spec.segments]:
                if (w, seg, key) in known or (not live and (w, seg) in evaluated):
                    continue
                out.append(
                    PlannedRun(
                        monitor.id,
                        version.id,
                        w,
                        w + window_us,
                        seg,
                        key,
                        state.n_events,
                        state.n_labels,
                    )
                )
        return out

    def _states(
        self,
        model: ModelRecord,
        version_id: int,
        window_us: int,
        start: int,
        end: int,
        live_from: int,
    ) -> dict[int, _WindowState]:
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
        with self.store.read() as conn:
            rows = conn.execute(by_events, params).all()
            label_rows = conn.execute(by_labels, params).all() if live_from < end else []
        labelled = {int(k): (int(n), int(r)) for k, n, r in label_rows}
        states: dict[int, _WindowState] = {}
        for k, n, received in rows:
            nl, lr = labelled.get(int(k), (0, 0))
            states[int(k) * window_us] = _WindowState(int(n), int(received), nl, lr)
        return states
