"""POST /otlp/v1/metrics: OTLP/HTTP metrics (protobuf and JSON) become usage samples."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from sqlalchemy import select

from modelwatch.collectors import OtlpSpec
from modelwatch.config import load_config
from modelwatch.errors import ConfigError
from modelwatch.store import tables as t
from modelwatch.store.engine import Store

PROTOBUF = {"content-type": "application/x-protobuf"}
T0 = 1_795_168_800 * 10**9  # 2026-11-20T10:00:00Z in nanoseconds
MIB = 1024 * 1024
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _attrs(**values: str) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items()]


def _export(
    metrics: list[Metric], model: str = "churn", version: str = "v1"
) -> ExportMetricsServiceRequest:
    resource = Resource(attributes=_attrs(**{"service.name": model, "service.version": version}))
    scope = ScopeMetrics(metrics=metrics)
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[scope])]
    )


def _duration(time: int, *series: tuple[float, int]) -> Metric:
    points = [
        HistogramDataPoint(
            time_unix_nano=time, count=count, sum=total, attributes=_attrs(route=f"/r{i}")
        )
        for i, (total, count) in enumerate(series)
    ]
    return Metric(
        name="http.server.request.duration",
        unit="s",
        histogram=Histogram(data_points=points, aggregation_temporality=DELTA),
    )


def _memory(time: int, mib: int) -> Metric:
    point = NumberDataPoint(time_unix_nano=time, as_int=mib * MIB)
    return Metric(name="process.memory.usage", unit="By", gauge=Gauge(data_points=[point]))


def _cpu(time: int, seconds: float) -> Metric:
    points = [
        NumberDataPoint(
            start_time_unix_nano=T0 - 10**12,
            time_unix_nano=time,
            as_double=seconds,
            attributes=_attrs(**{"cpu.mode": "user"}),
        )
    ]
    return Metric(
        name="process.cpu.time",
        unit="s",
        sum=Sum(data_points=points, aggregation_temporality=CUMULATIVE, is_monotonic=True),
    )


def _post(client: TestClient, request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
    r = client.post("/otlp/v1/metrics", content=request.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    return ExportMetricsServiceResponse.FromString(r.content)


def _stored(store: Store) -> list[dict[str, Any]]:
    u = t.usage_samples
    query = select(u.c.ts_us, u.c.latency_ms, u.c.cpu_seconds, u.c.memory_mb, u.c.sample_id)
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(u.c.ts_us))]


def test_protobuf_export_is_stored_as_mapped_usage(churn: TestClient, store: Store) -> None:
    t1, t2 = T0, T0 + 60 * 10**9
    first = _export([_duration(t1, (0.5, 4), (1.5, 4)), _memory(t1, 256), _cpu(t1, 10.0)])
    assert not _post(churn, first).HasField("partial_success")
    second = _export([_memory(t2, 300), _cpu(t2, 12.5)])
    assert not _post(churn, second).HasField("partial_success")

    rows = _stored(store)
    assert len(rows) == 2
    # Histograms give the mean over every series; the cumulative CPU's first reading
    # is only its baseline, the next one stores the difference.
    assert rows[0]["ts_us"] == t1 // 1000
    assert rows[0]["latency_ms"] == pytest.approx(2.0 / 8 * 1000)
    assert rows[0]["memory_mb"] == pytest.approx(256)
    assert rows[0]["cpu_seconds"] is None
    assert rows[1]["cpu_seconds"] == pytest.approx(2.5)
    assert rows[1]["memory_mb"] == pytest.approx(300)
    assert churn.get("/v1/models/churn").json()["versions"][0]["usage"]["count"] == 2


def test_a_resent_export_is_not_stored_twice(churn: TestClient, store: Store) -> None:
    request = _export([_duration(T0, (0.3, 3)), _memory(T0, 128)])
    _post(churn, request)
    _post(churn, request)
    rows = _stored(store)
    assert len(rows) == 1
    assert rows[0]["sample_id"].startswith("otlp:")


def test_json_export_in_the_otlp_json_encoding(churn: TestClient, store: Store) -> None:
    # As an OTLP JSON exporter writes it: camelCase keys, int64 as strings, enums as numbers.
    body = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "churn"}}]
                },
                "scopeMetrics": [
                    {
                        "scope": {"name": "app"},
                        "metrics": [
                            {
                                "name": "latency",
                                "unit": "ms",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(T0),
                                            "count": "5",
                                            "sum": 400.0,
                                            "attributes": [
                                                {
                                                    "key": "model.version",
                                                    "value": {"stringValue": "v2"},
                                                }
                                            ],
                                        }
                                    ],
                                },
                            }
                        ],
                        "somethingNew": True,
                    }
                ],
            }
        ]
    }
    configured = {"version_attribute": "model.version", "metrics": {"latency": "latency_ms"}}
    churn.app.state.otlp.spec = OtlpSpec.model_validate(configured)
    r = churn.post(
        "/otlp/v1/metrics", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {}
    versions = {v["version"]: v for v in churn.get("/v1/models/churn").json()["versions"]}
    assert versions["v2"]["usage"]["count"] == 1
    assert _stored(store)[0]["latency_ms"] == pytest.approx(80.0)


def test_json_encoding_of_the_protobuf_classes_is_accepted(churn: TestClient, store: Store) -> None:
    body = json_format.MessageToJson(_export([_memory(T0, 64)]))
    r = churn.post("/otlp/v1/metrics", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert _stored(store)[0]["memory_mb"] == pytest.approx(64)


def test_unknown_model_is_a_partial_success_naming_it(churn: TestClient, store: Store) -> None:
    request = _export([_memory(T0, 64), _duration(T0, (0.1, 1))], model="nosuch")
    request.resource_metrics.extend(_export([_memory(T0, 32)]).resource_metrics)
    response = _post(churn, request)
    assert response.partial_success.rejected_data_points == 2
    assert "nosuch" in response.partial_success.error_message
    assert [r["memory_mb"] for r in _stored(store)] == [pytest.approx(32)]


def test_points_without_a_model_attribute_are_rejected(churn: TestClient) -> None:
    request = _export([_memory(T0, 64)])
    del request.resource_metrics[0].resource.attributes[:]
    response = _post(churn, request)
    assert response.partial_success.rejected_data_points == 1
    assert "service.name" in response.partial_success.error_message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"\x0a\xff\xff", "application/x-protobuf"), (b"{not json", "application/json")],
)
def test_undecodable_body_is_400(churn: TestClient, body: bytes, content_type: str) -> None:
    r = churn.post("/otlp/v1/metrics", content=body, headers={"content-type": content_type})
    assert r.status_code == 400
    assert r.headers["content-type"] == content_type
    if content_type == "application/json":
        assert r.json()["error"] == "invalid_otlp"
        assert "ExportMetricsServiceRequest" in r.json()["detail"]


def test_unsupported_content_type_is_415(churn: TestClient) -> None:
    r = churn.post("/otlp/v1/metrics", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert "text/plain" in r.json()["detail"]


def test_gzip_bodies_are_accepted(churn: TestClient, store: Store) -> None:
    import gzip

    body = gzip.compress(_export([_memory(T0, 16)]).SerializeToString())
    headers = {**PROTOBUF, "content-encoding": "gzip"}
    assert churn.post("/otlp/v1/metrics", content=body, headers=headers).status_code == 200
    assert _stored(store)[0]["memory_mb"] == pytest.approx(16)


def test_otlp_config_errors_name_the_key(tmp_path: Any) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text("otlp:\n  metrics:\n    process.cpu.time: cpu_hours\n")
    with pytest.raises(ConfigError, match=r"otlp\.metrics\.process\.cpu\.time"):
        load_config(path)
    path.write_text("otlp:\n  model_attribute: k8s.deployment.name\n")
    spec = load_config(path).otlp
    assert spec.model_attribute == ["k8s.deployment.name"]
    assert spec.metrics["process.cpu.time"] == "cpu_seconds"
