"""Config for the usage collectors that read what model servers already publish.

``otlp`` maps OTLP/HTTP metrics (pushed to ``POST /otlp/v1/metrics``) to usage
fields; ``scrape`` lists Prometheus targets the service polls. Both name their
source metrics and the usage field each one becomes; values are converted to
the field's unit from the metric's unit (OTLP ``unit``) or its name suffix
(Prometheus ``_seconds``, ``_bytes``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelwatch.durations import parse_duration

__all__ = [
    "DEFAULT_OTLP_METRICS",
    "CumulativeDeltas",
    "OtlpSpec",
    "ScrapeTarget",
    "UsageReadings",
    "UsageTarget",
    "to_usage_unit",
    "unit_from_prometheus_name",
    "usage_sample_id",
]

UsageTarget = Literal["latency_ms", "cpu_seconds", "memory_mb", "gpu_seconds"]

DEFAULT_OTLP_METRICS: dict[str, UsageTarget] = {
    "http.server.request.duration": "latency_ms",
    "process.cpu.time": "cpu_seconds",
    "process.memory.usage": "memory_mb",
}

_MIB = 1024.0 * 1024.0
# Factor from a source unit (UCUM, as OTLP uses) to each usage field's own unit.
_TIME_TO_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}
_BYTES_TO_MIB = {
    "By": 1 / _MIB,
    "KiBy": 1 / 1024.0,
    "MiBy": 1.0,
    "GiBy": 1024.0,
    "kBy": 1e3 / _MIB,
    "MBy": 1e6 / _MIB,
    "GBy": 1e9 / _MIB,
}
_FIELD_SCALES: dict[str, tuple[dict[str, float], float]] = {
    # field -> (units it can be converted from, factor from base unit to the field's unit)
    "latency_ms": (_TIME_TO_SECONDS, 1000.0),
    "cpu_seconds": (_TIME_TO_SECONDS, 1.0),
    "gpu_seconds": (_TIME_TO_SECONDS, 1.0),
    "memory_mb": (_BYTES_TO_MIB, 1.0),
}
_PROMETHEUS_SUFFIX_UNITS = {
    "_seconds": "s",
    "_milliseconds": "ms",
    "_microseconds": "us",
    "_bytes": "By",
}


def to_usage_unit(field: str, value: float, unit: str) -> float:
    """``value`` measured in ``unit`` expressed in ``field``'s unit; an empty or unknown
    unit is taken to be the field's own (e.g. a bare number for ``memory_mb``)."""
    units, factor = _FIELD_SCALES[field]
    scale = units.get(unit)
    if scale is None:
        return value
    return value * scale * factor


def unit_from_prometheus_name(name: str) -> str:
    """The unit a Prometheus metric name declares by its suffix (``_seconds`` -> ``s``)."""
    base = name.removesuffix("_total")
    for suffix, unit in _PROMETHEUS_SUFFIX_UNITS.items():
        if base.endswith(suffix):
            return unit
    return ""


class OtlpSpec(BaseModel):
    """How OTLP metrics become usage samples. The model and version are the first
    attribute found, data-point attributes before resource attributes."""

    model_config = ConfigDict(extra="forbid")

    model_attribute: list[str] = Field(
        default_factory=lambda: ["modelwatch.model", "service.name"], min_length=1
    )
    version_attribute: list[str] = Field(
        default_factory=lambda: ["modelwatch.version", "service.version"], min_length=1
    )
    metrics: dict[str, UsageTarget] = Field(
        default_factory=lambda: dict(DEFAULT_OTLP_METRICS),
        description="OTel metric name -> usage field; replaces the defaults when given",
    )

    @field_validator("model_attribute", "version_attribute", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class ScrapeTarget(BaseModel):
    """One Prometheus endpoint polled every ``interval`` for one model version."""

    model_config = ConfigDict(extra="forbid")

    url: str
    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    interval: int = Field(15, description="seconds, or a duration such as '30s'")
    metrics: dict[str, UsageTarget] = Field(min_length=1)
    labels: dict[str, str] = Field(
        default_factory=dict, description="only series with these exact label values"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: object) -> int:
        if not isinstance(value, str | int | float):
            raise ValueError("a duration such as '15s' or a number of seconds")
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("must be at least 1s")
        return seconds


class CumulativeDeltas:
    """Differences between successive readings of cumulative series (counters, histogram
    sum and count), kept in memory per series.

    A series' first reading only sets its baseline (what came before it may already
    be counted, e.g. before a restart). A reading not newer than the last one is a
    repeat and gives nothing; a new start time or a value going down is a reset, and
    the reading itself is the delta. Thread-safe; the oldest series are forgotten
    beyond ``max_series``.
    """

    def __init__(self, max_series: int = 100_000) -> None:
        self.max_series = max_series
        self._last: dict[Hashable, tuple[int, int, tuple[float, ...]]] = {}
        self._lock = threading.Lock()

    def delta(
        self, series: Hashable, start: int, time: int, values: tuple[float, ...]
    ) -> tuple[float, ...] | None:
        with self._lock:
            previous = self._last.get(series)
            if previous is not None and time <= previous[1]:
                return None
            self._last.pop(series, None)  # re-inserted last: the dict stays oldest-first
            self._last[series] = (start, time, values)
            if len(self._last) > self.max_series:
                self._last.pop(next(iter(self._last)))
        if previous is None:
            return None
        last_start, _, last_values = previous
        if start != last_start or any(v < p for v, p in zip(values, last_values, strict=True)):
            return values
        return tuple(v - p for v, p in zip(values, last_values, strict=True))


class UsageReadings:
    """The usage field values of one sample: latency as a mean (however many series
    report it), the rest as totals."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.latency_sum = 0.0
        self.latency_count = 0.0

    def add(self, field: str, value: float, count: float | None = None) -> None:
        """Add a reading; for ``latency_ms`` ``value`` is the sum of ``count`` observations
        (one when None)."""
        if field == "latency_ms":
            self.latency_sum += value
            self.latency_count += 1.0 if count is None else count
        else:
            self.totals[field] = self.totals.get(field, 0.0) + value

    def values(self) -> dict[str, float]:
        out = dict(self.totals)
        if self.latency_count > 0:
            out["latency_ms"] = self.latency_sum / self.latency_count
        return out


def usage_sample_id(prefix: str, *parts: str, length: int) -> str:
    """``prefix:`` and the first ``length`` hex digits of the SHA-256 of ``parts``
    (NUL-separated): a usage sample id derived from what identifies the sample."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]
    return f"{prefix}:{digest}"
