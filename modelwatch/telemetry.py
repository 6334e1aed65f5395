"""The service's own traces and metrics, exported with OpenTelemetry over OTLP/HTTP.

Configured by the standard ``OTEL_*`` variables (listed in
:mod:`modelwatch.settings`): a signal is exported when an OTLP endpoint is set
for it and neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_<SIGNAL>_EXPORTER=none``
turns it off. Otherwise nothing is installed: no provider, no thread, and the
instrumented modules run against the API's no-op tracer and meter.

Instrumented modules use the global API (``trace.get_tracer(__name__)``) and
the instruments below, which the API binds to the real meter once
:func:`setup_telemetry` installs one. Spans: ``ingest <kind>`` (one per batch),
``evaluation run`` (one per run), ``delivery <kind>`` (one per attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from opentelemetry import metrics, trace

from modelwatch import __version__
from modelwatch.settings import (
    ENV_OTEL_ENDPOINT,
    ENV_OTEL_METRIC_EXPORT_INTERVAL,
    ENV_OTEL_METRICS_ENDPOINT,
    ENV_OTEL_METRICS_EXPORTER,
    ENV_OTEL_PROTOCOL,
    ENV_OTEL_RESOURCE_ATTRIBUTES,
    ENV_OTEL_SDK_DISABLED,
    ENV_OTEL_SERVICE_NAME,
    ENV_OTEL_TRACES_ENDPOINT,
    ENV_OTEL_TRACES_EXPORTER,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "DELIVERY_ATTEMPTS",
    "INGESTED_ITEMS",
    "INGEST_REJECTIONS",
    "RUN_DURATION",
    "SCRAPE_FAILURES",
    "Telemetry",
    "TelemetryConfig",
    "setup_telemetry",
]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "modelwatch"
DEFAULT_METRIC_EXPORT_INTERVAL_MS = 60_000
_HTTP_PROTOCOL = "http/protobuf"

_meter = metrics.get_meter("modelwatch", __version__)
INGESTED_ITEMS = _meter.create_counter(
    "modelwatch.ingest.items", unit="{item}", description="events, labels or samples stored"
)
INGEST_REJECTIONS = _meter.create_counter(
    "modelwatch.ingest.rejections", unit="{batch}", description="ingest batches refused"
)
RUN_DURATION = _meter.create_histogram(
    "modelwatch.evaluation.run.duration", unit="s", description="evaluation run wall time"
)
DELIVERY_ATTEMPTS = _meter.create_counter(
    "modelwatch.delivery.attempts", unit="{attempt}", description="outbox delivery attempts"
)
SCRAPE_FAILURES = _meter.create_counter(
    "modelwatch.scrape.failures", unit="{scrape}", description="failed Prometheus scrapes"
)


@dataclass(frozen=True)
class TelemetryConfig:
    """What the ``OTEL_*`` variables ask for; ``None`` endpoints mean "do not export"."""

    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    resource_attributes: dict[str, str] = field(default_factory=dict)
    metric_export_interval_ms: int = DEFAULT_METRIC_EXPORT_INTERVAL_MS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetryConfig:
        if env.get(ENV_OTEL_SDK_DISABLED, "").strip().lower() == "true":
            return cls()
        protocol = env.get(ENV_OTEL_PROTOCOL, _HTTP_PROTOCOL).strip() or _HTTP_PROTOCOL
        if protocol != _HTTP_PROTOCOL:
            log.warning(
                "%s=%s: modelwatch exports OTLP over %s only; telemetry is off",
                ENV_OTEL_PROTOCOL,
                protocol,
                _HTTP_PROTOCOL,
            )
            return cls()
        attributes = _resource_attributes(env.get(ENV_OTEL_RESOURCE_ATTRIBUTES, ""))
        service = env.get(ENV_OTEL_SERVICE_NAME) or attributes.pop("service.name", None)
        return cls(
            traces_endpoint=_endpoint(
                env, ENV_OTEL_TRACES_EXPORTER, ENV_OTEL_TRACES_ENDPOINT, "traces"
            ),
            metrics_endpoint=_endpoint(
                env, ENV_OTEL_METRICS_EXPORTER, ENV_OTEL_METRICS_ENDPOINT, "metrics"
            ),
            service_name=service or DEFAULT_SERVICE_NAME,
            resource_attributes=attributes,
            metric_export_interval_ms=_positive_int(
                env, ENV_OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_METRIC_EXPORT_INTERVAL_MS
            ),
        )


def _endpoint(env: Mapping[str, str], exporter_var: str, signal_var: str, path: str) -> str | None:
    exporters = {e.strip() for e in env.get(exporter_var, "otlp").split(",") if e.strip()}
    if "otlp" not in exporters:
        if exporters - {"none"}:
            log.warning("%s=%s: only 'otlp' and 'none' are supported", exporter_var, exporters)
        return None
    signal = env.get(signal_var, "").strip()
    if signal:
        return signal
    base = env.get(ENV_OTEL_ENDPOINT, "").strip()
    return f"{base.rstrip('/')}/v1/{path}" if base else None


def _resource_attributes(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in raw.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        log.warning("%s=%r is not a positive integer; using %d", name, raw, default)
    return default


class Telemetry:
    """The providers :func:`setup_telemetry` installed (none when export is off)."""

    def __init__(
        self,
        config: TelemetryConfig,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("modelwatch", __version__)

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def force_flush(self, timeout_ms: int = 10_000) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(timeout_ms)
        if self.meter_provider is not None:
            self.meter_provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush and stop the exporters; never raises (it runs at process exit)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is None:
                continue
            try:
                provider.shutdown()
            except Exception:
                log.exception("shutting down telemetry failed")


def setup_telemetry(env: Mapping[str, str] | None = None) -> Telemetry:
    """Install OTLP/HTTP exporters as the global providers where ``OTEL_*`` asks for them."""
    import os

    config = TelemetryConfig.from_env(os.environ if env is None else env)
    if config.traces_endpoint is None and config.metrics_endpoint is None:
        return Telemetry(config)
    try:
        return _install(config)
    except Exception:  # telemetry must never stop the service from starting
        log.exception("setting up OpenTelemetry export failed; continuing without it")
        return Telemetry(config)


def _install(config: TelemetryConfig) -> Telemetry:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create(
        {
            **config.resource_attributes,
            "service.name": config.service_name,
            "service.version": __version__,
        }
    )
    tracer_provider = meter_provider = None
    if config.traces_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        exporter = OTLPSpanExporter(endpoint=config.traces_endpoint)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
    if config.metrics_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=config.metrics_endpoint),
            export_interval_millis=config.metric_export_interval_ms,
        )
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[reader], shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
    log.info(
        "OpenTelemetry export: traces to %s, metrics to %s",
        config.traces_endpoint or "nowhere",
        config.metrics_endpoint or "nowhere",
    )
    return Telemetry(config, tracer_provider, meter_provider)
