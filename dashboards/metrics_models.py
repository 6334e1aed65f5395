"""Metric families about each model version's data: volumes, label delay, alerts.

Counts come from the per-model tables with one ``UNION ALL`` statement per
kind (events, joined labels, labels), so a scrape costs a fixed number of
queries however many models there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from sqlalchemy import Select, func, literal, select, union_all

from dashboards.metrics_catalog import NO_ALIAS, VERSION_LABELS, Catalog
from modelwatch.store import tables as t
from modelwatch.store.alerts import LEAD_VERSION
from modelwatch.store.engine import Store

__all__ = ["alert_families", "catalog_families", "volume_families"]

US = 1_000_000
ALERT_STATES = ("pending", "firing")


def catalog_families(catalog: Catalog) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "modelwatch_model_version_info",
        "Every registered model version (value 1) with its alias and task.",
        labels=[*VERSION_LABELS, "task"],
    )
    for v in catalog.versions.values():
        info.add_metric([*v.labels, v.task], 1.0)
    yield info


def _union(selects: list[Select[Any]], conn: Any) -> list[Any]:
    if not selects:
        return []
    query = selects[0] if len(selects) == 1 else union_all(*selects)
    return list(conn.execute(query))


def volume_families(store: Store, catalog: Catalog) -> Iterator[Metric]:
    events, joined, received = [], [], []
    for model_id, layout in catalog.layouts.items():
        ev, lb = layout.events, layout.labels
        events.append(
            select(ev.c.version_id, func.count(), func.max(ev.c.ts_us)).group_by(ev.c.version_id)
        )
        joined.append(
            select(
                ev.c.version_id,
                func.count(),
                func.max(lb.c.ts_us),
                func.sum(lb.c.ts_us - ev.c.ts_us),
            )
            .join(lb, lb.c.request_id == ev.c.request_id)
            .group_by(ev.c.version_id)
        )
        received.append(select(literal(model_id), func.count()).select_from(lb))
    us = t.usage_samples
    with store.read() as conn:
        event_rows = _union(events, conn)
        joined_rows = _union(joined, conn)
        received_rows = _union(received, conn)
        usage_rows = conn.execute(
            select(us.c.version_id, func.count()).group_by(us.c.version_id)
        ).all()
    yield from _event_families(catalog, event_rows, usage_rows)
    yield from _label_families(catalog, joined_rows, received_rows)


def _event_families(
    catalog: Catalog, event_rows: Sequence[Any], usage_rows: Sequence[Any]
) -> Iterator[Metric]:
    predictions = CounterMetricFamily(
        "modelwatch_predictions", "Predictions stored.", labels=VERSION_LABELS
    )
    latest = GaugeMetricFamily(
        "modelwatch_last_prediction_timestamp_seconds",
        "Timestamp of the newest stored prediction.",
        labels=VERSION_LABELS,
    )
    usage = CounterMetricFamily(
        "modelwatch_usage_samples", "Resource usage samples stored.", labels=VERSION_LABELS
    )
    for version_id, n, newest in event_rows:
        info = catalog.versions.get(version_id)
        if info is not None:
            predictions.add_metric(info.labels, n)
            if newest is not None:
                latest.add_metric(info.labels, newest / US)
    for version_id, n in usage_rows:
        info = catalog.versions.get(version_id)
        if info is not None:
            usage.add_metric(info.labels, n)
    yield from (predictions, latest, usage)


def _label_families(
    catalog: Catalog, joined_rows: list[Any], received_rows: list[Any]
) -> Iterator[Metric]:
    joined = CounterMetricFamily(
        "modelwatch_labels_joined",
        "Ground-truth labels joined to a stored prediction.",
        labels=VERSION_LABELS,
    )
    latest = GaugeMetricFamily(
        "modelwatch_last_label_timestamp_seconds",
        "Timestamp of the newest joined label.",
        labels=VERSION_LABELS,
    )
    delay = SummaryMetricFamily(
        "modelwatch_label_delay_seconds",
        "Time from a prediction to its label, over joined labels "
        "(rate of _sum over rate of _count: the recent mean).",
        labels=VERSION_LABELS,
    )
    for version_id, n, newest, total_us in joined_rows:
        info = catalog.versions.get(version_id)
        if info is None:
            continue
        joined.add_metric(info.labels, n)
        delay.add_metric(info.labels, n, float(total_us or 0) / US)
        if newest is not None:
            latest.add_metric(info.labels, newest / US)
    received = CounterMetricFamily(
        "modelwatch_labels_received",
        "Ground-truth labels stored per model, joined or not.",
        labels=["model"],
    )
    for model_id, n in received_rows:
        received.add_metric([catalog.model_names[model_id]], n)
    yield from (joined, latest, delay, received)


def alert_families(store: Store, catalog: Catalog) -> Iterator[Metric]:
    """Pending and firing alerts, counted by model, version, alias, policy and severity
    (a traffic stream's alert under the stream's lead version, its champion)."""
    a = t.alerts
    with store.read() as conn:
        rows = conn.execute(
            select(a.c.policy, a.c.model, a.c.state, a.c.labels, a.c.annotations).where(
                a.c.state.in_(ALERT_STATES)
            )
        ).all()
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for policy, model, state, raw, notes in rows:
        labels = orjson.loads(raw)
        # An input-drift alert judges a traffic stream; it counts under its lead version.
        version = str(labels.get("version") or orjson.loads(notes).get(LEAD_VERSION, ""))
        info = catalog.by_name(model, version)
        alias = info.alias if info is not None else NO_ALIAS
        counts[(model, version, alias, policy, str(labels.get("severity", "")), state)] += 1
    family = GaugeMetricFamily(
        "modelwatch_alerts",
        "Alerts in state pending or firing.",
        labels=[*VERSION_LABELS, "policy", "severity", "state"],
    )
    for key, n in sorted(counts.items()):
        family.add_metric(list(key), n)
    yield family
