"""OTLP/HTTP metrics receiver: ``POST /otlp/v1/metrics`` turns a model server's own
OpenTelemetry metrics into usage samples.

Point a model server's SDK at it with
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://modelwatch:8000/otlp/v1/metrics``.
The config's ``otlp`` section (:class:`modelwatch.collectors.OtlpSpec`) names the
attributes that carry the model and version and which metrics become which usage
field. Gauges and delta sums are taken as they are; cumulative sums and
histograms become per-export differences (the first export of a series only sets
its baseline; the last readings are kept per process, so behind several API
replicas have senders use delta temporality:
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``). Histograms give the
mean (sum / count) as ``latency_ms``. Points of
one resource, model version and time become one usage sample whose id is derived
from them, so a resent export is not stored twice.

Answers follow the OTLP/HTTP spec: 200 with an ``ExportMetricsServiceResponse``
(``partial_success`` counts the points refused, e.g. of an unknown model) in the
request's encoding, 400 for an undecodable body, 415 for other content types.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from collector.ingest import Ingestor
from modelwatch.auth import Principal
from modelwatch.collectors import (
    CumulativeDeltas,
    OtlpSpec,
    UsageReadings,
    to_usage_unit,
    usage_sample_id,
)
from modelwatch.domain import Scope
from modelwatch.errors import ModelwatchError, NotFoundError, PayloadTooLargeError
from modelwatch.http import ApiRoute, Requires, read_body
from modelwatch.settings import Settings

__all__ = ["OtlpReceiver", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/otlp", tags=["ingest"], route_class=ApiRoute)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_INVALID_ARGUMENT = 3  # google.rpc.Code
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_MAX_MESSAGES = 5


@dataclass
class _Sample:
    """The usage fields of one resource's points for one model version at one time."""

    model: str
    version: str
    time_ns: int
    resource: str
    points: int = 0
    readings: UsageReadings = field(default_factory=UsageReadings)

    def as_usage(self) -> dict[str, Any] | None:
        values = self.readings.values()
        if not values:
            return None
        parts = (self.model, self.version, self.resource, str(self.time_ns))
        sample_id = usage_sample_id("otlp", *parts, length=40)
        return {"timestamp": self.time_ns / 1e9, "sample_id": sample_id, **values}


@dataclass
class _Outcome:
    rejected: int = 0
    messages: list[str] = field(default_factory=list)

    def reject(self, points: int, message: str) -> None:
        self.rejected += points
        if message not in self.messages and len(self.messages) < _MAX_MESSAGES:
            self.messages.append(message)


def _text(kv: Iterable[KeyValue]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in kv:
        kind = item.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "double_value", "bool_value"):
            out[item.key] = str(getattr(item.value, kind))
    return out


class OtlpReceiver:
    """Maps export requests to usage samples and stores them through the ingestor."""

    def __init__(self, spec: OtlpSpec, ingestor: Ingestor) -> None:
        self.spec = spec
        self.ingestor = ingestor
        self.deltas = CumulativeDeltas()

    def export(self, request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
        outcome = _Outcome()
        samples: dict[tuple[str, str, str, int], _Sample] = {}
        for resource_metrics in request.resource_metrics:
            resource = _text(resource_metrics.resource.attributes)
            resource_key = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS).decode()
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    usage_field = self.spec.metrics.get(metric.name)
                    if usage_field is None:
                        continue  # not usage; accepted and ignored
                    for point in _points(metric):
                        model, version = self._identify(dict(point.attrs), resource)
                        if model is None or version is None:
                            outcome.reject(1, self._unidentified(model))
                            continue
                        if point.time <= 0:
                            outcome.reject(1, f"{metric.name}: a data point without time_unix_nano")
                            continue
                        key = (model, version, resource_key, point.time)
                        sample = samples.get(key) or samples.setdefault(
                            key, _Sample(model, version, point.time, resource_key)
                        )
                        sample.points += 1
                        self._add(sample, metric, usage_field, point)
        self._store(samples.values(), outcome)
        if not outcome.rejected:
            return ExportMetricsServiceResponse()
        partial = ExportMetricsPartialSuccess(
            rejected_data_points=outcome.rejected, error_message="; ".join(outcome.messages)
        )
        return ExportMetricsServiceResponse(partial_success=partial)

    def _identify(self, attrs: dict[str, str], resource: dict[str, str]) -> tuple[str | None, ...]:
        def first(names: list[str]) -> str | None:
            for name in names:
                value = attrs.get(name) or resource.get(name)
                if value:
                    return value
            return None

        return first(self.spec.model_attribute), first(self.spec.version_attribute)

    def _unidentified(self, model: str | None) -> str:
        if model is None:
            return f"no model attribute (one of {', '.join(self.spec.model_attribute)})"
        names = ", ".join(self.spec.version_attribute)
        return f"model {model!r}: no version attribute (one of {names})"

    def _add(self, sample: _Sample, metric: Metric, usage_field: str, point: _Point) -> None:
        value, count = point.value, point.count
        if point.cumulative:
            reading = (value,) if count is None else (value, count)
            series = (metric.name, sample.model, sample.version, sample.resource, point.attrs)
            delta = self.deltas.delta(series, point.start, point.time, reading)
            if delta is None:
                return
            value, count = delta[0], (None if count is None else delta[1])
        sample.readings.add(usage_field, to_usage_unit(usage_field, value, metric.unit), count)

    def _store(self, samples: Iterable[_Sample], outcome: _Outcome) -> None:
        groups: dict[tuple[str, str], list[_Sample]] = {}
        for sample in samples:
            groups.setdefault((sample.model, sample.version), []).append(sample)
        for (model, version), group in groups.items():
            usage = [u for u in (s.as_usage() for s in group) if u is not None]
            points = sum(s.points for s in group)
            try:
                if usage:
                    self.ingestor.usage({"model": model, "version": version, "samples": usage})
                else:  # only baselines so far: still tell the sender about unknown models
                    registry = self.ingestor.registry
                    registry.get_version(registry.get_model(model), version)
            except (NotFoundError, PayloadTooLargeError) as exc:
                outcome.reject(points, str(exc))
            except ModelwatchError as exc:
                if exc.status_code >= 500:
                    raise
                outcome.reject(points, f"model {model!r} version {version!r}: {exc}")


@dataclass(frozen=True)
class _Point:
    """One data point: a number, or a histogram's (or summary's) sum and count."""

    attrs: tuple[tuple[str, str], ...]
    start: int
    time: int
    value: float
    count: float | None
    cumulative: bool


def _points(metric: Metric) -> Iterator[_Point]:
    kind = metric.WhichOneof("data")
    if kind in ("gauge", "sum"):
        numbers = metric.gauge if kind == "gauge" else metric.sum
        cumulative = kind == "sum" and metric.sum.aggregation_temporality != _DELTA
        for p in numbers.data_points:
            value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
            attrs = tuple(sorted(_text(p.attributes).items()))
            yield _Point(attrs, p.start_time_unix_nano, p.time_unix_nano, value, None, cumulative)
    elif kind in ("histogram", "exponential_histogram", "summary"):
        data = getattr(metric, kind)
        # Summaries have no temporality field: they are always cumulative.
        cumulative = getattr(data, "aggregation_temporality", 0) != _DELTA
        for p in data.data_points:
            if kind != "summary" and not p.HasField("sum"):
                continue  # no sum, no mean
            attrs = tuple(sorted(_text(p.attributes).items()))
            start, time = p.start_time_unix_nano, p.time_unix_nano
            yield _Point(attrs, start, time, float(p.sum), float(p.count), cumulative)


# --- HTTP --------------------------------------------------------------------


def _decompress(body: bytes, encoding: str, limit: int) -> bytes | None:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        return None
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise PayloadTooLargeError(f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def _decode(body: bytes, media: str) -> ExportMetricsServiceRequest:
    message = ExportMetricsServiceRequest()
    if media == PROTOBUF:
        message.ParseFromString(body)
    else:
        json_format.Parse(body, message, ignore_unknown_fields=True)
    return message


def _answer(message: ExportMetricsServiceResponse, media: str) -> Response:
    if media == PROTOBUF:
        return Response(message.SerializeToString(), media_type=PROTOBUF)
    return Response(orjson.dumps(json_format.MessageToDict(message)), media_type=JSON)


def _error(status: int, code: str, detail: str, media: str) -> Response:
    if media == PROTOBUF:
        from google.rpc.status_pb2 import Status

        body = Status(code=_INVALID_ARGUMENT, message=detail).SerializeToString()
        return Response(body, status_code=status, media_type=PROTOBUF)
    content = {"error": code, "detail": detail, "code": _INVALID_ARGUMENT, "message": detail}
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object", "description": "OTLP JSON encoding"}},
        },
    }
}


@router.post("/v1/metrics", openapi_extra=_DOC, response_class=Response)
async def post_otlp_metrics(request: Request, _: Principal = Requires(Scope.INGEST)) -> Response:
    """OTLP/HTTP metrics export (protobuf or JSON), mapped into usage samples."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        detail = f"content-type {media or '(none)'!r} is not supported; send {PROTOBUF} or {JSON}"
        return _error(415, "unsupported_media_type", detail, JSON)
    settings: Settings = request.app.state.settings
    raw = await read_body(request, settings.max_body_bytes)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    body = _decompress(raw, encoding, settings.max_body_bytes)
    if body is None:
        detail = f"content-encoding {encoding!r} is not supported; send gzip or none"
        return _error(415, "unsupported_media_type", detail, JSON)
    try:
        export = _decode(body, media)
    except (DecodeError, json_format.ParseError, ValueError) as exc:
        detail = f"body is not an OTLP ExportMetricsServiceRequest ({media}): {exc}"
        return _error(400, "invalid_otlp", detail, media)
    receiver: OtlpReceiver = request.app.state.otlp
    return _answer(await run_in_threadpool(receiver.export, export), media)
