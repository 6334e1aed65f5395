"""Planning: which (version, window, segment key) needs a run for its current data state.

A window's data state is its event count and newest receipt time, plus, until
the monitor's label delay has passed, the same for its joined labels. A new
state means a new run (late events or labels re-evaluate the window); after
the label delay a window that has been evaluated once is final. Missed windows
back to ``backfill`` (or ``--since``) are planned too, but never before the
version's first event, and workers take them oldest first.
"""

from __future__ import annotations

import logging

from evaluators.windows import US, align, closed_before
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorRecord
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.store.runs import (
    PlannedRun,
    RunStore,
    WindowState,
    first_event_us,
    window_states,
)

__all__ = ["Planner"]

log = logging.getLogger(__name__)


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
        first_event = first_event_us(self.store, model, version.id)
        if first_event is None:
            return []
        # A backfill reaching past the version's first event has nothing to catch up there.
        start = max(start, align(first_event, monitor.spec.window))
        if end <= start:
            return []
        window_us = monitor.spec.window * US
        live_from = max(start, align(live_after, monitor.spec.window) - window_us)
        states = window_states(self.store, model, version.id, window_us, start, end, live_from)
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
            state = states.get(w, WindowState(0, 0))
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
