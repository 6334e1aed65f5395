"""The Prometheus exporter: a collector that reads the store when scraped.

Nothing is kept in mutable gauges: a scrape reads the catalog, the latest
evaluation results, volumes, alerts and the service's own bookkeeping with a
fixed number of set-based queries, so every replica serves the same figures.
A section too slow to read on every scrape is served from its last read and
refreshed in the background (:mod:`dashboards.metrics_cache`), so a scrape does
not wait for it. A part that fails (the store is down) is logged and left out;
the scrape still answers, with ``modelwatch_store_up`` 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from dashboards.metrics_cache import SectionCache
from dashboards.metrics_catalog import Catalog, LayoutCache, load_catalog
from dashboards.metrics_health import (
    SchedulerView,
    evaluation_families,
    ingest_families,
    outbox_families,
    scheduler_families,
)
from dashboards.metrics_models import alert_families, catalog_families, volume_families
from dashboards.metrics_results import latest_results, result_families
from modelwatch import __version__
from modelwatch.store.engine import Store

__all__ = ["SchedulerView", "StoreCollector", "build_metrics_registry"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreCollector(Collector):
    """Builds every ``modelwatch_*`` family from the store when scraped.

    ``families`` maps metric keys to their family (``drift``, ``quality``, ...);
    ``top_features`` bounds per-feature drift series per model version.
    """

    def __init__(
        self,
        store: Store,
        *,
        families: Mapping[str, str],
        top_features: int = 10,
        scheduler: Callable[[], SchedulerView | None] | None = None,
        clock: Callable[[], float] = time.time,
        sections: SectionCache | None = None,
    ) -> None:
        self.store = store
        self.families = dict(families)
        self.top_features = top_features
        self.scheduler = scheduler
        self.clock = clock
        self._layouts = LayoutCache()
        self.sections = sections or SectionCache()

    def describe(self) -> Iterable[Metric]:
        return []  # registration must not read the store

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        ok = True
        catalog = self._section("catalog", lambda: [load_catalog(self.store, self._layouts)])
        if catalog:
            for name, build in self._store_sections(catalog[0]):
                families, _ = self.sections.get(name, build)
                ok = ok and families is not None
                yield from families or []
            yield from self.sections.ages()
        else:
            ok = False
        yield from scheduler_families(None if self.scheduler is None else self.scheduler())
        yield GaugeMetricFamily(
            "modelwatch_store_up", "1 when every store query of this scrape succeeded.", value=ok
        )
        info = GaugeMetricFamily(
            "modelwatch_build_info", "The modelwatch version serving.", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        yield GaugeMetricFamily(
            "modelwatch_metrics_collect_duration_seconds",
            "Time this scrape spent reading the store (sections served from an earlier read "
            "cost nothing here).",
            value=time.perf_counter() - started,
        )

    def _store_sections(self, catalog: Catalog) -> list[tuple[str, Callable[[], Iterable[Metric]]]]:
        store = self.store
        return [
            ("catalog", lambda: catalog_families(catalog)),
            (
                "results",
                lambda: result_families(
                    latest_results(store, catalog, self.families), self.top_features
                ),
            ),
            ("volumes", lambda: volume_families(store, catalog)),
            ("alerts", lambda: alert_families(store, catalog)),
            ("ingest", lambda: ingest_families(store, catalog)),
            ("evaluation", lambda: evaluation_families(store, catalog, self.clock())),
            ("outbox", lambda: outbox_families(store)),
        ]

    def _section(self, name: str, build: Callable[[], Iterable[T]]) -> list[T] | None:
        try:
            return list(build())
        except Exception:  # a scrape must answer; the failure is logged and shows as store_up 0
            log.exception("reading the %s metrics failed", name)
            return None


def build_metrics_registry(
    store: Store,
    *,
    families: Mapping[str, str],
    top_features: int = 10,
    scheduler: Callable[[], SchedulerView | None] | None = None,
    inline_budget_s: float = 1.0,
) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding a :class:`StoreCollector`;
    ``scheduler`` returns the evaluation scheduler's state when scraped; a section whose
    read takes ``inline_budget_s`` or longer is served from its last read."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(
        store,
        families=families,
        top_features=top_features,
        scheduler=scheduler,
        sections=SectionCache(inline_budget_s=inline_budget_s),
    )
    registry.register(collector)
    return registry
