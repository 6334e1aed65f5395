"""Model registry routes: models, versions, aliases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from modelwatch.auth import Principal
from modelwatch.domain import VERSION_PATTERN, Alias, ModelSpec, Scope
from modelwatch.http import ApiRoute, ORJSONResponse, Requires
from modelwatch.pages import body_next, cursor_param, decode_cursor, limit_param, page_of
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.store.stats import VersionStats, label_stats, version_stats
from modelwatch.timeutil import us_to_datetime

__all__ = ["router"]

router = APIRouter(
    prefix="/v1", tags=["registry"], default_response_class=ORJSONResponse, route_class=ApiRoute
)


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN)
    alias: Alias | None = None
    description: str = ""


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _model_summary(model: ModelRecord) -> dict[str, Any]:
    return {
        "name": model.name,
        "task": model.spec.task.value,
        "spec": model.spec.model_dump(mode="json"),
        "created_at": model.created_at,
        "created_by": model.created_by,
    }


def _version_json(v: VersionRecord, stats: VersionStats | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": v.version,
        "alias": v.alias,
        "description": v.description,
        "created_at": v.created_at,
        "created_by": v.created_by,
    }
    if stats is not None:
        out["events"] = {"count": stats.events, "latest": us_to_datetime(stats.latest_event_us)}
        out["labels"] = {
            "joined": stats.labels_joined,
            "latest": us_to_datetime(stats.latest_label_us),
        }
        out["usage"] = {
            "count": stats.usage_samples,
            "latest": us_to_datetime(stats.latest_usage_us),
        }
    return out


@router.post("/models", status_code=201)
def create_model(
    spec: ModelSpec, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    return _model_summary(_registry(request).create_model(spec, who.name))


@router.get("/models")
def list_models(
    request: Request,
    response: Response,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Models by name, in pages: `next` (and a `Link` header) carries on where a page stopped."""
    after = decode_cursor(cursor, (str,))
    rows = _registry(request).list_models(str(after[0]) if after else None, limit + 1)
    page = page_of(rows, limit, lambda m: (m.name,))
    return {
        "models": [_model_summary(m) for m in page.items],
        **body_next(request, response, page),
    }


def _model_detail(request: Request, name: str) -> dict[str, Any]:
    registry = _registry(request)
    model = registry.get_model(name)
    stats = version_stats(registry.store, model)
    labels = label_stats(registry.store, model)
    references = request.app.state.references.latest_by_version(model)
    versions = []
    for v in registry.list_versions(model):
        entry = _version_json(v, stats.get(v.id, VersionStats()))
        entry["reference"] = references.get(v.id)
        versions.append(entry)
    return {
        **_model_summary(model),
        "labels": {
            "count": labels.labels,
            "latest": us_to_datetime(labels.latest_label_us),
            "unjoined": labels.unjoined,
        },
        "versions": versions,
        "alias_history": registry.alias_history(model),
    }


@router.get("/models/{name}")
async def get_model(
    name: str, request: Request, _: Principal = Requires(Scope.READ)
) -> dict[str, Any]:
    detail: dict[str, Any] = await run_in_threadpool(_model_detail, request, name)
    return detail


@router.post("/models/{name}/versions", status_code=201)
def create_version(
    name: str, body: VersionIn, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    registry = _registry(request)
    model = registry.get_model(name)
    version = registry.create_version(model, body.version, body.alias, who.name, body.description)
    return _version_json(version)


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN)


@router.put("/models/{name}/aliases/{alias}")
def move_alias(
    name: str, alias: Alias, body: AliasIn, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    registry = _registry(request)
    model = registry.get_model(name)
    target = registry.set_alias(model, alias, body.version, who.name)
    return {
        "model": model.name,
        "alias": alias.value,
        "version": target.version,
        "changed_by": who.name,
        "changed_at": datetime.now().astimezone(),
    }
