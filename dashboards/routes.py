"""``GET /metrics``: the Prometheus text exposition of the app's metrics registry."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.http import Requires

__all__ = ["METRICS_REGISTRY_STATE", "router"]

# The app keeps its registry (see dashboards.metrics.build_metrics_registry) under this name.
METRICS_REGISTRY_STATE = "metrics_registry"

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, _: Principal = Requires(Scope.READ)) -> Response:
    """Every ``modelwatch_*`` metric, read from the store now (scrape with a read-scope key)."""
    registry: CollectorRegistry = getattr(request.app.state, METRICS_REGISTRY_STATE)
    body = await run_in_threadpool(generate_latest, registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
