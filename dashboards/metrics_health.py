"""Metric families about the service: ingest rejections, evaluation runs, outbox, scheduler."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from sqlalchemy import func, select

from dashboards.metrics_catalog import Catalog
from modelwatch.store import tables as t
from modelwatch.store.engine import Store

__all__ = [
    "SchedulerView",
    "evaluation_families",
    "ingest_families",
    "outbox_families",
    "scheduler_families",
]

US = 1_000_000
INGEST_KINDS = ("predictions", "labels", "usage")
RUN_STATUSES = ("pending", "running", "done", "failed")
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")
MONITOR_LABELS = ["monitor", "model"]


class SchedulerView(Protocol):
    """What the metrics read of the evaluation scheduler's state (its ``SchedulerState``)."""

    running: bool
    planned: int
    evaluated: int
    failed: int
    last_plan_at: float | None
    last_run_at: float | None
    monitors: list[str]


def ingest_families(store: Store, catalog: Catalog) -> Iterator[Metric]:
    r = t.ingest_rejections
    with store.read() as conn:
        rows = conn.execute(
            select(r.c.model_id, r.c.kind, func.count(), func.sum(r.c["items"])).group_by(
                r.c.model_id, r.c.kind
            )
        ).all()
    batches = CounterMetricFamily(
        "modelwatch_ingest_rejected_batches",
        "Ingest batches refused by validation (nothing of them stored).",
        labels=["model", "kind"],
    )
    items = CounterMetricFamily(
        "modelwatch_ingest_rejected_items",
        "Events, labels or usage samples in refused batches.",
        labels=["model", "kind"],
    )
    found = {(model_id, kind): (n, int(n_items or 0)) for model_id, kind, n, n_items in rows}
    kinds = sorted(set(INGEST_KINDS) | {kind for _, kind in found})
    for model_id, name in catalog.model_names.items():
        for kind in kinds:
            n, n_items = found.get((model_id, kind), (0, 0))
            batches.add_metric([name, kind], n)
            items.add_metric([name, kind], n_items)
    yield from (batches, items)


def evaluation_families(store: Store, catalog: Catalog, now_s: float) -> Iterator[Metric]:
    """Runs by status, their durations, and how far evaluation is behind, per monitor.

    One grouped scan of the runs: per (monitor, status), the count, the duration's sum
    and count, and the newest and oldest window end.
    """
    r = t.evaluation_runs
    with store.read() as conn:
        rows = conn.execute(
            select(
                r.c.monitor_id,
                r.c.status,
                func.count(),
                func.sum(r.c.duration_ms),
                func.count(r.c.duration_ms),
                func.max(r.c.window_end_us),
                func.min(r.c.window_end_us),
            ).group_by(r.c.monitor_id, r.c.status)
        ).all()
    yield _runs(catalog, rows)
    yield from _timings(catalog, rows, now_s)


def _runs(catalog: Catalog, rows: Sequence[Any]) -> Metric:
    runs = GaugeMetricFamily(
        "modelwatch_evaluation_runs",
        "Evaluation runs by status (pending, running, done, failed).",
        labels=[*MONITOR_LABELS, "status"],
    )
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for monitor_id, status, n, *_ in rows:
        counts[(monitor_id, status)] += n
    for monitor_id, (name, model) in catalog.monitors.items():
        for status in RUN_STATUSES:
            runs.add_metric([name, model, status], counts.get((monitor_id, status), 0))
    return runs


def _timings(catalog: Catalog, rows: Sequence[Any], now_s: float) -> Iterator[Metric]:
    duration = SummaryMetricFamily(
        "modelwatch_evaluation_duration_seconds",
        "Time spent evaluating finished runs.",
        labels=MONITOR_LABELS,
    )
    lag = GaugeMetricFamily(
        "modelwatch_evaluation_lag_seconds",
        "Time since the end of the newest evaluated window.",
        labels=MONITOR_LABELS,
    )
    backlog = GaugeMetricFamily(
        "modelwatch_evaluation_oldest_pending_seconds",
        "Time since the end of the oldest window waiting to be evaluated (0: none waiting).",
        labels=MONITOR_LABELS,
    )
    # Durations and the newest window end are of done runs; the backlog of pending ones.
    done = {row[0]: (row[3], row[4], row[5]) for row in rows if row[1] == "done"}
    oldest = {row[0]: row[6] for row in rows if row[1] == "pending"}
    for monitor_id, (name, model) in catalog.monitors.items():
        labels = [name, model]
        total_ms, n, newest_end = done.get(monitor_id, (0, 0, None))
        oldest_pending = oldest.get(monitor_id)
        duration.add_metric(labels, int(n or 0), float(total_ms or 0) / 1000.0)
        backlog.add_metric(labels, 0.0 if oldest_pending is None else now_s - oldest_pending / US)
        if newest_end is not None:
            lag.add_metric(labels, max(0.0, now_s - newest_end / US))
    yield from (duration, lag, backlog)


def outbox_families(store: Store) -> Iterator[Metric]:
    d = t.deliveries
    with store.read() as conn:
        rows = conn.execute(
            select(d.c.kind, d.c.status, func.count()).group_by(d.c.kind, d.c.status)
        ).all()
    counts = {(kind, status): n for kind, status, n in rows}
    depth = GaugeMetricFamily(
        "modelwatch_outbox_deliveries",
        "Outbox deliveries (notifications, webhooks) by kind and status.",
        labels=["kind", "status"],
    )
    for kind in sorted({kind for kind, _ in counts}):
        statuses = sorted(set(DELIVERY_STATUSES) | {s for k, s in counts if k == kind})
        for status in statuses:
            depth.add_metric([kind, status], counts.get((kind, status), 0))
    yield depth


def scheduler_families(state: SchedulerView | None) -> Iterator[Metric]:
    """The in-process scheduler's state; absent where it never ran (``serve --no-scheduler``
    replicas), whose zeros would only hide the workers that do the evaluating."""
    if state is None or not (state.running or state.planned or state.evaluated or state.failed):
        return
    yield GaugeMetricFamily(
        "modelwatch_scheduler_running", "1 when this process's scheduler runs.", value=state.running
    )
    for name, doc, value in (
        ("modelwatch_scheduler_planned_runs", "Runs planned by this process.", state.planned),
        ("modelwatch_scheduler_evaluated_runs", "Runs evaluated by this process.", state.evaluated),
        ("modelwatch_scheduler_failures", "Scheduler jobs that failed.", state.failed),
    ):
        yield CounterMetricFamily(name, doc, value=value)
    yield GaugeMetricFamily(
        "modelwatch_scheduler_monitors", "Monitors scheduled.", value=len(state.monitors)
    )
    for name, doc, at in (
        ("modelwatch_scheduler_last_plan_timestamp_seconds", "Last planning.", state.last_plan_at),
        ("modelwatch_scheduler_last_run_timestamp_seconds", "Last evaluation.", state.last_run_at),
    ):
        if at is not None:
            yield GaugeMetricFamily(name, doc, value=at)
