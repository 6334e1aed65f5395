"""``/metrics`` families of the CloudEvents receiver, read from the store on each scrape.

``modelwatch_cloudevents_dropped_total{reason}``: halves of inferences dropped because
their other half did not arrive within ``cloudevents.pair_timeout`` (``unpaired_request``:
the response never came, e.g. a logger in ``mode: request``; ``unpaired_response``: the
request never came). ``modelwatch_cloudevents_waiting{kind}``: halves waiting right now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from modelwatch.cloudevents_spec import DROP_REASONS
from modelwatch.store import tables as t
from modelwatch.store.engine import Store

__all__ = ["CloudEventsCollector"]

log = logging.getLogger(__name__)

KINDS = ("request", "response")


class CloudEventsCollector(Collector):
    """Two set-based queries per scrape; a failing store leaves the families out."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return []  # registration must not read the store

    def collect(self) -> Iterator[Metric]:
        drops, halves = t.cloudevent_drops, t.cloudevent_halves
        try:
            with self.store.read() as conn:
                dropped = dict(conn.execute(select(drops.c.reason, drops.c.dropped)).tuples().all())
                waiting = dict(
                    conn.execute(select(halves.c.kind, func.count()).group_by(halves.c.kind))
                    .tuples()
                    .all()
                )
        except Exception:  # a scrape must answer; modelwatch_store_up shows the store's state
            log.exception("reading the CloudEvents metrics failed")
            return
        counter = CounterMetricFamily(
            "modelwatch_cloudevents_dropped",
            "Halves of inferences (request or response CloudEvents) dropped unpaired after "
            "the pairing timeout.",
            labels=["reason"],
        )
        for reason in sorted({*DROP_REASONS, *dropped}):
            counter.add_metric([reason], int(dropped.get(reason, 0)))
        gauge = GaugeMetricFamily(
            "modelwatch_cloudevents_waiting",
            "Halves of inferences waiting for their other half.",
            labels=["kind"],
        )
        for kind in KINDS:
            gauge.add_metric([kind], int(waiting.get(kind, 0)))
        yield counter
        yield gauge
