"""The service's own OpenTelemetry traces and metrics."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from evaluators.planner import Planner
from evaluators.runner import Runner
from modelwatch.domain import ModelSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.outbox import DeliveryOutcome, DeliveryWorker, Outbox
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.runs import RunStore
from modelwatch.telemetry import TelemetryConfig, setup_telemetry
from tests.alerts.receivers import Reply, WebhookReceiver
from tests.conftest import CHURN_SPEC, churn_event

T0 = 1_795_168_800  # 2026-11-20T10:00:00Z
HOUR = 3600


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the global tracer provider (which can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_one_span_per_ingest_batch(churn: TestClient, spans: InMemorySpanExporter) -> None:
    events = [churn_event(i) for i in range(50)]
    body = {"model": "churn", "version": "v1", "events": events}
    assert churn.post("/v1/predictions", json=body).status_code == 200
    assert churn.post("/v1/predictions", json=body).status_code == 200
    batches = _named(spans, "ingest predictions")
    assert len(batches) == 2  # one per batch, not per event
    first, second = (dict(s.attributes or {}) for s in batches)
    assert first["modelwatch.model"] == "churn"
    assert first["modelwatch.version"] == "v1"
    assert first["modelwatch.ingest.kind"] == "predictions"
    assert (first["modelwatch.ingest.accepted"], first["modelwatch.ingest.duplicates"]) == (50, 0)
    assert (second["modelwatch.ingest.accepted"], second["modelwatch.ingest.duplicates"]) == (0, 50)


def test_a_refused_batch_is_an_error_span(churn: TestClient, spans: InMemorySpanExporter) -> None:
    body = {"model": "churn", "version": "v1", "events": [churn_event(0, prediction=7)]}
    assert churn.post("/v1/predictions", json=body).status_code == 422
    (span,) = _named(spans, "ingest predictions")
    assert not span.status.is_ok
    assert "modelwatch.ingest.accepted" not in (span.attributes or {})


def test_one_span_per_evaluation_run(store: Store, spans: InMemorySpanExporter) -> None:
    from collector.ingest import Ingestor

    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", None, "test")
    events = [churn_event(i, timestamp=T0 + i) for i in range(20)]
    Ingestor(store, registry).predictions({"model": "churn", "version": "v1", "events": events})
    spec = {"name": "hourly", "model": "churn", "window": "1h", "checks": ["volume"]}
    monitor = MonitorStore(store, registry).create(MonitorSpec.model_validate(spec), "test")
    Planner(store, registry, RunStore(store)).plan(monitor, (T0 + 2 * HOUR) * 10**6, T0 * 10**6)
    runner = Runner(store, registry, "w1")
    while runner.run_next():
        pass
    (run,) = _named(spans, "evaluation run")
    attributes = dict(run.attributes or {})
    assert attributes["modelwatch.monitor"] == "hourly"
    assert attributes["modelwatch.version"] == "v1"
    assert attributes["modelwatch.window.start"] == "2026-11-20T10:00:00+00:00"
    assert attributes["modelwatch.run.status"] == "done"


def test_one_span_per_delivery_attempt(store: Store, spans: InMemorySpanExporter) -> None:
    outbox = Outbox(store)
    with store.write() as conn:
        outbox.enqueue(
            conn,
            kind="test",
            stream="s",
            target="ml-oncall",
            idempotency_key="k1",
            payload={},
            max_age_s=3600,
        )
    worker = DeliveryWorker(
        outbox, {"test": lambda d: DeliveryOutcome(ok=False, detail="503")}, "w"
    )
    assert worker.run_one() is not None
    (span,) = _named(spans, "delivery test")
    attributes = dict(span.attributes or {})
    assert attributes["modelwatch.delivery.target"] == "ml-oncall"
    assert attributes["modelwatch.delivery.attempt"] == 1
    assert attributes["modelwatch.delivery.outcome"] == "failed"
    assert not span.status.is_ok


def test_without_an_endpoint_nothing_is_installed() -> None:
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    threads = threading.active_count()
    telemetry = setup_telemetry({"OTEL_SERVICE_NAME": "mw"})
    assert not telemetry.enabled
    assert telemetry.tracer_provider is None and telemetry.meter_provider is None
    assert threading.active_count() == threads
    assert trace.get_tracer_provider() is tracer_provider
    assert metrics.get_meter_provider() is meter_provider
    telemetry.shutdown()


@pytest.mark.parametrize(
    ("env", "traces", "metrics_url"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
            "http://c:4318/v1/traces",
            "http://c:4318/v1/metrics",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/x",
            },
            "http://c:4318/v1/traces",
            "http://m/x",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"},
            None,
            "http://c/v1/metrics",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_METRICS_EXPORTER": "none"},
            "http://c/v1/traces",
            None,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, None, None),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            None,
            None,
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/v1/traces"}, "http://t/v1/traces", None),
    ],
)
def test_standard_variables_choose_what_is_exported(
    env: dict[str, str], traces: str | None, metrics_url: str | None
) -> None:
    config = TelemetryConfig.from_env(env)
    assert (config.traces_endpoint, config.metrics_endpoint) == (traces, metrics_url)


def test_service_name_from_the_standard_variables() -> None:
    assert TelemetryConfig.from_env({}).service_name == "modelwatch"
    attributes = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,deployment.environment=prod"}
    config = TelemetryConfig.from_env(attributes)
    assert config.service_name == "a"
    assert config.resource_attributes == {"deployment.environment": "prod"}
    assert TelemetryConfig.from_env({**attributes, "OTEL_SERVICE_NAME": "b"}).service_name == "b"


_SERVICE = """
import sys
from fastapi.testclient import TestClient
from modelwatch.app import create_app
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.telemetry import setup_telemetry
from tests.alerts.receivers import Reply, WebhookReceiver
from tests.conftest import CHURN_SPEC, churn_event

telemetry = setup_telemetry()
assert telemetry.enabled
store = Store(sys.argv[1])
upgrade(store)
with TestClient(create_app(Settings(database_url=store.url), store)) as client:
    assert client.post("/v1/models", json=CHURN_SPEC).status_code == 201
    assert client.post("/v1/models/churn/versions", json={"version": "v1"}).status_code == 201
    body = {"model": "churn", "version": "v1", "events": [churn_event(i) for i in range(5)]}
    assert client.post("/v1/predictions", json=body).status_code == 200
telemetry.force_flush()
telemetry.shutdown()
"""


def test_with_an_endpoint_spans_and_metrics_arrive_as_otlp_protobuf(tmp_path: Any) -> None:
    with WebhookReceiver(default=Reply(200, {"Content-Type": "application/x-protobuf"})) as otlp:
        env = {
            "PATH": "/usr/bin:/bin",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.origin,
            "OTEL_SERVICE_NAME": "modelwatch-test",
            "MODELWATCH_LOG_LEVEL": "WARNING",
        }
        # A process of its own: the global providers can be installed only once per process.
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_SERVICE), f"sqlite:///{tmp_path}/mw.db"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parents[1],
        )
    assert done.returncode == 0, done.stderr
    by_path: dict[str, list[bytes]] = {}
    for request in otlp.requests:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-protobuf"
        by_path.setdefault(request.path, []).append(request.body)

    spans = []
    for body in by_path["/v1/traces"]:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "modelwatch-test"
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    (ingest,) = [s for s in spans if s.name == "ingest predictions"]
    attributes = {a.key: a.value for a in ingest.attributes}
    assert attributes["modelwatch.model"].string_value == "churn"
    assert attributes["modelwatch.ingest.accepted"].int_value == 5

    exported = set()
    for body in by_path["/v1/metrics"]:
        for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for scope in resource_metrics.scope_metrics:
                exported |= {m.name for m in scope.metrics}
    assert "modelwatch.ingest.items" in exported
