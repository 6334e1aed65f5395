"""Prometheus scrape targets: poll a model server's ``/metrics`` and store usage samples.

Each target of the config's ``scrape`` list (:class:`modelwatch.collectors.ScrapeTarget`)
is fetched every ``interval``; the metrics it maps become one usage sample per
scrape. Counters give the increase since the previous scrape (the first scrape
only sets the baseline), histograms and summaries the mean of the observations
since then (``_sum`` / ``_count`` increases), gauges their value (summed over
series; ``latency_ms`` is averaged). Units follow the metric name's suffix:
``_seconds`` latency becomes milliseconds, ``_bytes`` memory MiB. A sample's id
is the target and the interval slot it was taken in, so two processes scraping
the same target store it once. Failures are logged and counted, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from collector.ingest import Ingestor
from modelwatch.collectors import (
    CumulativeDeltas,
    ScrapeTarget,
    UsageReadings,
    to_usage_unit,
    unit_from_prometheus_name,
    usage_sample_id,
)
from modelwatch.telemetry import SCRAPE_FAILURES

__all__ = ["ScrapeState", "Scraper"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_ACCEPT = "text/plain;version=0.0.4"

Job = tuple[Callable[[], object], float, str]


@dataclass
class ScrapeState:
    """A target's failed scrapes, for logs and tests."""

    failures: int = 0
    last_error: str | None = None


class Scraper:
    def __init__(
        self,
        targets: list[ScrapeTarget],
        ingestor: Ingestor,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = list(targets)
        self.ingestor = ingestor
        self.clock = clock
        self.states = [ScrapeState() for _ in self.targets]
        self.deltas = CumulativeDeltas()
        self._client = httpx.Client(transport=transport, headers={"accept": _ACCEPT})

    def jobs(self) -> list[Job]:
        """(function, every seconds, job id) per target, for the scheduler."""
        return [
            (partial(self.scrape, i), float(t.interval), f"scrape:{i}")
            for i, t in enumerate(self.targets)
        ]

    def scrape(self, index: int) -> bool:
        """Scrape one target and store its sample; False (logged, counted) on failure."""
        target, state = self.targets[index], self.states[index]
        now = self.clock()
        try:
            text = self._fetch(target)
            values = self._readings(index, target, text, now).values()
            if values:
                sample = {"timestamp": now, "sample_id": _sample_id(target, now), **values}
                payload = {"model": target.model, "version": target.version, "samples": [sample]}
                self.ingestor.usage(payload)
        except Exception as exc:  # a scrape job never raises into the scheduler
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            SCRAPE_FAILURES.add(1, {"modelwatch.model": target.model})
            log.warning(
                "scraping %s for %s/%s failed: %s",
                target.url,
                target.model,
                target.version,
                state.last_error,
            )
            return False
        return True

    def close(self) -> None:
        self._client.close()

    def _fetch(self, target: ScrapeTarget) -> str:
        timeout = min(10.0, float(target.interval))
        with self._client.stream("GET", target.url, timeout=timeout) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ValueError(
                        f"response of more than {MAX_RESPONSE_BYTES} bytes is too large"
                    )
            # As ``response.text`` decodes a body read in full.
            return bytes(body).decode(response.encoding or "utf-8", errors="replace")

    def _readings(self, index: int, target: ScrapeTarget, text: str, now: float) -> UsageReadings:
        readings = UsageReadings()
        time_ns = int(now * 1e9)
        for family in text_string_to_metric_families(text):
            field = _mapped_field(target, family.name, family.samples)
            if field is None:
                continue
            unit = unit_from_prometheus_name(family.name)
            samples = [s for s in family.samples if _matches(s.labels, target.labels)]
            if family.type in ("histogram", "summary", "gaugehistogram"):
                for labels, (total, count) in _sum_count(family.name, samples).items():
                    key = (index, family.name, labels)
                    delta = self.deltas.delta(key, 0, time_ns, (total, count))
                    if delta is not None and delta[1] > 0:
                        readings.add(field, to_usage_unit(field, delta[0], unit), delta[1])
                continue
            for s in samples:
                if s.name.endswith("_created"):
                    continue
                value = float(s.value)
                if family.type == "counter":
                    key = (index, s.name, tuple(sorted(s.labels.items())))
                    delta = self.deltas.delta(key, 0, time_ns, (value,))
                    if delta is None:
                        continue
                    value = delta[0]
                readings.add(field, to_usage_unit(field, value, unit))
        return readings


def _mapped_field(target: ScrapeTarget, family: str, samples: Iterable[Sample]) -> str | None:
    """The usage field for a family, mapped by its name or its samples' (``..._total``)."""
    if family in target.metrics:
        return target.metrics[family]
    for s in samples:
        if s.name in target.metrics:
            return target.metrics[s.name]
    return None


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _sum_count(
    family: str, samples: list[Sample]
) -> dict[tuple[tuple[str, str], ...], tuple[float, float]]:
    """``_sum`` and ``_count`` per series (labels without ``le`` / ``quantile``)."""
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for s in samples:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("le", "quantile")))
        if s.name == f"{family}_sum":
            sums[labels] = float(s.value)
        elif s.name == f"{family}_count":
            counts[labels] = float(s.value)
    return {k: (sums[k], counts[k]) for k in sums.keys() & counts.keys()}


def _sample_id(target: ScrapeTarget, now: float) -> str:
    series = usage_sample_id("scrape", target.url, target.model, target.version, length=32)
    return f"{series}:{int(now // target.interval)}"
