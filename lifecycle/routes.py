"""Retention routes: a model's retention and the cut-offs it gives now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from lifecycle.retention import ModelCutoffs, Retention
from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.durations import format_duration
from modelwatch.errors import ConflictError
from modelwatch.http import ApiRoute, ORJSONResponse, Requires
from modelwatch.retention import ModelRetention
from modelwatch.timeutil import us_to_datetime

__all__ = ["RETENTION_STATE", "router"]

RETENTION_STATE = "retention"

router = APIRouter(
    prefix="/v1", tags=["lifecycle"], default_response_class=ORJSONResponse, route_class=ApiRoute
)


def _retention(request: Request) -> Retention:
    service: Retention = getattr(request.app.state, RETENTION_STATE)
    return service


def _duration(seconds: int) -> str:
    """Retention is written in days: ``7d`` stays ``7d``."""
    return f"{seconds // 86_400}d" if seconds % 86_400 == 0 else format_duration(seconds)


def _json(cutoffs: ModelCutoffs) -> dict[str, Any]:
    results_before = cutoffs.results_before_us
    return {
        "model": cutoffs.model.name,
        "raw": _duration(cutoffs.raw_s),
        "results": None if cutoffs.results_s is None else _duration(cutoffs.results_s),
        "source": cutoffs.source,
        "raw_before": us_to_datetime(cutoffs.raw_before_us),
        "results_before": None if results_before is None else us_to_datetime(results_before),
    }


def _not_declared(service: Retention, name: str) -> None:
    if service.declared_in_config(name):
        raise ConflictError(
            f"the retention of {name!r} is declared in the config (retention.models.{name}); "
            "change it there"
        )


@router.get("/models/{name}/retention")
def get_retention(name: str, request: Request, _: Principal = Requires(Scope.READ)) -> Any:
    """The model's retention (``source``: default, config or api) and what it cuts off now."""
    service = _retention(request)
    return _json(service.cutoffs(service.registry.get_model(name)))


@router.put("/models/{name}/retention")
def put_retention(
    name: str, body: ModelRetention, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> Any:
    """Set the model's own retention; a field left out takes the deployment's default.
    A model whose retention the config declares is refused (409): the config wins."""
    service = _retention(request)
    model = service.registry.get_model(name)
    _not_declared(service, name)
    service.settings.put(model.id, name, body.raw, body.results, actor=who.name, source="api")
    return _json(service.cutoffs(model))


@router.delete("/models/{name}/retention")
def delete_retention(name: str, request: Request, who: Principal = Requires(Scope.ADMIN)) -> Any:
    """Back to the deployment's default retention."""
    service = _retention(request)
    model = service.registry.get_model(name)
    _not_declared(service, name)
    service.settings.clear(model.id, name, actor=who.name)
    return _json(service.cutoffs(model))
