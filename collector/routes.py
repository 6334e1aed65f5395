"""Ingest routes: predictions, ground truth, resource usage, reference uploads.

Bodies are read raw and parsed in the threadpool: prediction batches by the
per-model typed decoder of :mod:`collector.wire` when they are plain, everything
else with orjson (both several times faster than a pydantic request model, see
DESIGN.md). The documented request schemas below are for OpenAPI only and are
checked by :mod:`collector.validation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from collector import files
from collector.ingest import Ingestor, IngestResult
from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.http import (
    ApiRoute,
    ORJSONResponse,
    Requires,
    check_json_content_type,
    parse_json,
    read_body,
)
from modelwatch.settings import Settings
from modelwatch.store.references import ReferenceStore, sha256_hex
from modelwatch.store.registry import Registry

__all__ = ["DOC_MODELS", "router"]

router = APIRouter(
    prefix="/v1", tags=["ingest"], default_response_class=ORJSONResponse, route_class=ApiRoute
)


class EventDoc(BaseModel):
    request_id: str = Field(max_length=128)
    timestamp: str | float = Field(description="RFC 3339 or Unix seconds")
    features: dict[str, float | int | str | bool | None]
    prediction: str | int | float | bool
    score: float | None = Field(None, description="binary: probability of the positive class")
    scores: dict[str, float] | None = Field(None, description="multiclass: class -> probability")
    segment: dict[str, str | int | bool] | None = None


class PredictionBatch(BaseModel):
    model: str
    version: str
    events: list[EventDoc]


class LabelDoc(BaseModel):
    request_id: str
    label: str | int | float | bool
    timestamp: str | float | None = Field(None, description="defaults to the time received")


class LabelBatch(BaseModel):
    model: str
    labels: list[LabelDoc]


class UsageDoc(BaseModel):
    timestamp: str | float
    sample_id: str | None = Field(
        None,
        max_length=128,
        description="optional id; a sample resent with the same id is stored once",
    )
    latency_ms: float | None = None
    cpu_seconds: float | None = None
    memory_mb: float | None = None
    gpu_seconds: float | None = None
    cost: float | None = Field(None, description="cost of this sample in your currency")


class UsageBatch(BaseModel):
    model: str
    version: str
    samples: list[UsageDoc]


class IngestResponse(BaseModel):
    received: int
    accepted: int
    duplicates: int
    updated: int


DOC_MODELS: list[type[BaseModel]] = [PredictionBatch, LabelBatch, UsageBatch]


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


_Store = Callable[[Ingestor, bytes], IngestResult]


async def _ingest(request: Request, store: _Store) -> dict[str, int]:
    check_json_content_type(request)
    settings: Settings = request.app.state.settings
    body = await read_body(request, settings.max_body_bytes)
    ingestor: Ingestor = request.app.state.ingestor
    # Parsing a batch takes milliseconds: in the threadpool, never on the event loop.
    result = await run_in_threadpool(store, ingestor, body)
    return dict(result.as_dict())


@router.post(
    "/predictions", openapi_extra=_body_doc(PredictionBatch), response_model=IngestResponse
)
async def post_predictions(
    request: Request, _: Principal = Requires(Scope.INGEST)
) -> dict[str, int]:
    """Store prediction events; returns after the write committed."""
    return await _ingest(request, Ingestor.predictions_json)


@router.post("/ground-truth", openapi_extra=_body_doc(LabelBatch), response_model=IngestResponse)
async def post_ground_truth(
    request: Request, _: Principal = Requires(Scope.INGEST)
) -> dict[str, int]:
    """Store labels, joined to predictions by request id whenever either arrives."""
    return await _ingest(request, lambda i, body: i.labels(parse_json(body, check_text=False)))


@router.post("/resource-usage", openapi_extra=_body_doc(UsageBatch), response_model=IngestResponse)
async def post_resource_usage(
    request: Request, _: Principal = Requires(Scope.INGEST)
) -> dict[str, int]:
    """Store resource usage samples (latency, CPU, memory, GPU, cost)."""
    return await _ingest(request, lambda i, body: i.usage(parse_json(body, check_text=False)))


_REFERENCE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/models/{name}/versions/{version}/reference", status_code=201, openapi_extra=_REFERENCE_DOC
)
async def upload_reference(
    name: str, version: str, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    """Upload a version's baseline data as the raw body (CSV or Parquet)."""
    settings: Settings = request.app.state.settings
    registry: Registry = request.app.state.registry
    model = await run_in_threadpool(registry.get_model, name)
    target = await run_in_threadpool(registry.get_version, model, version)
    data = await read_body(request, settings.max_reference_bytes)
    coerced, fmt, ignored = await run_in_threadpool(
        files.parse_reference, model, data, request.headers.get("content-type")
    )
    references: ReferenceStore = request.app.state.references
    stored = await run_in_threadpool(
        references.save, model, target, coerced, fmt, sha256_hex(data), who.name
    )
    return {
        "model": model.name,
        "version": target.version,
        "dataset_id": stored.dataset_id,
        "rows": stored.rows,
        "format": fmt,
        "sha256": stored.sha256,
        "ignored_columns": ignored,
    }
