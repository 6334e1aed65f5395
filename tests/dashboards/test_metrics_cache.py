"""A scrape never waits for a slow section: its last read is served and refreshed behind."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from dashboards.metrics import StoreCollector
from dashboards.metrics_cache import SectionCache
from modelwatch.store.engine import Store
from tests.dashboards.test_metrics import pick, registry_samples


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Section:
    """A section whose reads take ``cost`` seconds of the fake clock and count up."""

    def __init__(self, clock: Clock, cost: float) -> None:
        self.clock, self.cost, self.reads = clock, cost, 0
        self.fail = False

    def __call__(self) -> Iterable[Metric]:
        self.clock.now += self.cost
        self.reads += 1
        if self.fail:
            raise RuntimeError("store down")
        return [GaugeMetricFamily("reads", "reads so far", value=self.reads)]


class Deferred:
    """Background refreshes queued until the test runs them."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], None]] = []

    def __call__(self, name: str, work: Callable[[], None]) -> None:
        self.queued.append(work)

    def run(self) -> None:
        queued, self.queued = self.queued, []
        for work in queued:
            work()


def value(families: list[Metric] | None) -> float:
    assert families is not None
    return float(families[0].samples[0].value)


def cache(clock: Clock, spawn: Deferred) -> SectionCache:
    return SectionCache(
        inline_budget_s=1.0, cost_factor=10.0, min_age_s=15.0, clock=clock, spawn=spawn
    )


def test_a_cheap_section_is_read_on_every_scrape() -> None:
    clock, spawn = Clock(), Deferred()
    sections, section = cache(clock, spawn), Section(clock, cost=0.2)
    assert [value(sections.get("volumes", section)[0]) for _ in range(3)] == [1, 2, 3]
    assert spawn.queued == []


def test_a_slow_section_is_served_from_its_last_read_and_refreshed_behind() -> None:
    clock, spawn = Clock(), Deferred()
    sections, section = cache(clock, spawn), Section(clock, cost=3.0)
    families, age = sections.get("volumes", section)
    assert (value(families), age) == (1, 0.0)  # nothing to serve yet: read inline

    clock.now += 5.0
    families, age = sections.get("volumes", section)
    assert (value(families), age) == (1, 5.0)
    assert spawn.queued == [], "not due before 10 x its 3 s read"

    clock.now += 25.0
    families, age = sections.get("volumes", section)
    assert (value(families), age) == (1, 30.0), "the scrape does not wait for the refresh"
    assert len(spawn.queued) == 1
    sections.get("volumes", section)
    assert len(spawn.queued) == 1, "one refresh at a time"
    spawn.run()
    families, age = sections.get("volumes", section)
    assert (value(families), age) == (2, 0.0)
    assert section.reads == 2


def test_a_section_that_became_cheap_is_read_inline_again() -> None:
    clock, spawn = Clock(), Deferred()
    sections, section = cache(clock, spawn), Section(clock, cost=3.0)
    sections.get("volumes", section)
    section.cost = 0.1
    clock.now += 31.0
    sections.get("volumes", section)
    spawn.run()
    assert value(sections.get("volumes", section)[0]) == 3  # read inline, fresh


def test_a_failed_background_read_is_served_as_a_failure_until_the_next() -> None:
    clock, spawn = Clock(), Deferred()
    sections, section = cache(clock, spawn), Section(clock, cost=3.0)
    sections.get("volumes", section)
    section.fail = True
    clock.now += 31.0
    sections.get("volumes", section)
    spawn.run()
    assert sections.get("volumes", section)[0] is None  # shows as store_up 0
    section.fail = False
    clock.now += 31.0
    assert sections.get("volumes", section)[0] is None
    spawn.run()
    assert value(sections.get("volumes", section)[0]) == 3


def test_section_ages_are_exported() -> None:
    clock, spawn = Clock(), Deferred()
    sections = cache(clock, spawn)
    sections.get("volumes", Section(clock, cost=3.0))
    sections.get("alerts", Section(clock, cost=0.1))
    clock.now += 7.0
    registry = CollectorRegistry(auto_describe=False)

    class Ages:
        def collect(self) -> Iterable[Metric]:
            return sections.ages()

    registry.register(Ages())
    samples = registry_samples(registry)
    assert pick(samples, "modelwatch_metrics_section_age_seconds", section="alerts") == [0.0]
    volumes = pick(samples, "modelwatch_metrics_section_age_seconds", section="volumes")
    assert volumes == [pytest.approx(7.1)]


def test_the_collector_serves_slow_volumes_from_its_last_read(store: Store) -> None:
    """Through the real collector: with a zero budget every section is slow, so a second
    scrape serves the first read's figures and says how old they are."""
    clock, spawn = Clock(), Deferred()
    sections = SectionCache(inline_budget_s=0.0, clock=clock, spawn=spawn)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, families={}, sections=sections))
    first = registry_samples(registry)
    assert pick(first, "modelwatch_store_up") == [1.0]
    clock.now += 4.0
    second = registry_samples(registry)
    assert pick(second, "modelwatch_store_up") == [1.0]
    assert pick(second, "modelwatch_metrics_section_age_seconds", section="volumes") == [4.0]
    assert spawn.queued == []
