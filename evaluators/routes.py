"""Monitor and result routes: /v1/monitors, /v1/monitors/{id}/runs, /v1/models/{name}/results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from evaluators.checks import unknown_checks
from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.errors import FieldError, NotFoundError, ValidationFailed
from modelwatch.http import ApiRoute, DbId, ORJSONResponse, Requires
from modelwatch.monitors import MonitorSpec
from modelwatch.pages import body_next, cursor_param, decode_cursor, limit_param, page_of
from modelwatch.storable import INT32_MAX
from modelwatch.store.monitors import MonitorRecord, MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.results import DEFAULT_ROWS, MAX_ROWS, ResultQuery, query_results
from modelwatch.store.runs import RunRecord, RunStore
from modelwatch.timeutil import us_to_datetime

__all__ = ["router"]

router = APIRouter(
    prefix="/v1", tags=["evaluation"], default_response_class=ORJSONResponse, route_class=ApiRoute
)


def _monitors(request: Request) -> MonitorStore:
    return MonitorStore(request.app.state.store, request.app.state.registry)


def monitor_json(m: MonitorRecord) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "model": m.spec.model,
        "source": m.source,
        "spec": m.spec.model_dump(mode="json"),
        "updated_at": m.updated_at,
        "updated_by": m.updated_by,
    }


def run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "version_id": r.version_id,
        "window_start": us_to_datetime(r.window_start_us),
        "window_end": us_to_datetime(r.window_end_us),
        "segment_key": r.segment_key,
        "data_state": r.data_state,
        "status": r.status,
        "current": r.current,
        "attempts": r.attempts,
        "claimed_by": r.claimed_by,
        "finished_at": r.finished_at,
        "duration_ms": r.duration_ms,
        "events": r.n_events,
        "labels": r.n_labels,
        "error": r.error,
    }


def validate_monitor(spec: MonitorSpec) -> None:
    problems = unknown_checks(spec)
    if problems:
        raise ValidationFailed([FieldError(("checks", i, "metric"), msg) for i, msg in problems])


@router.post("/monitors", status_code=201)
def create_monitor(
    spec: MonitorSpec, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    validate_monitor(spec)
    created = _monitors(request).create(spec, who.name)
    request.app.state.evaluation.sync()  # schedule it now, not at the next periodic sync
    return monitor_json(created)


@router.get("/monitors")
def list_monitors(
    request: Request,
    response: Response,
    model: str | None = None,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Monitors by id, in pages: `next` (and a `Link` header) carries on where a page stopped."""
    after = decode_cursor(cursor, (int,), INT32_MAX)
    model_id = request.app.state.registry.get_model(model).id if model else None
    rows = _monitors(request).list(model_id, int(after[0]) if after else None, limit + 1)
    page = page_of(rows, limit, lambda m: (m.id,))
    return {"monitors": [monitor_json(m) for m in page.items], **body_next(request, response, page)}


@router.get("/monitors/{monitor_id}")
def get_monitor(
    monitor_id: DbId, request: Request, _: Principal = Requires(Scope.READ)
) -> dict[str, Any]:
    return monitor_json(_monitors(request).get(monitor_id))


@router.get("/monitors/{monitor_id}/runs")
def list_runs(
    monitor_id: DbId,
    request: Request,
    response: Response,
    limit: int = limit_param(50),
    status: str | None = Query(None, pattern="^(pending|running|done|failed)$"),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """A monitor's runs, newest first, in pages: `next` (and a `Link` header) carries on."""
    after = decode_cursor(cursor, (int,))
    monitor = _monitors(request).get(monitor_id)
    runs = RunStore(request.app.state.store)
    rows = runs.list(monitor_id, limit + 1, status, int(after[0]) if after else None)
    page = page_of(rows, limit, lambda r: (r.id,))
    return {
        "monitor": monitor_json(monitor),
        "counts": runs.counts(monitor_id),
        "runs": [run_json(r) for r in page.items],
        **body_next(request, response, page),
    }


def _us(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def _monitor_id(request: Request, model_id: int, name: str | None) -> int | None:
    if name is None:
        return None
    monitor = _monitors(request).get_by_name(name)
    if monitor.model_id != model_id:
        raise NotFoundError(f"no monitor named {name!r} on this model")
    return monitor.id


def _results(
    request: Request, response: Response, name: str, params: dict[str, Any]
) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    after = decode_cursor(params["cursor"], (int, str, int))
    model = registry.get_model(name)
    monitor_id = _monitor_id(request, model.id, params["monitor"])
    versions = {v.id: v for v in registry.list_versions(model)}
    if params["version"] is not None:
        versions = {v.id: v for v in versions.values() if v.version == params["version"]}
        if not versions:
            registry.get_version(model, params["version"])  # raises the 404
    query = ResultQuery(
        version_ids=list(versions),
        metric=params["metric"],
        column=params["column"],
        segment=params["segment"],
        since_us=_us(params["since"]),
        until_us=_us(params["until"]),
        current_only=not params["all_runs"],
        limit=params["limit"] + 1,
        monitor_id=monitor_id,
        after=after,
    )
    rows = query_results(request.app.state.store, query)
    page = page_of(rows, params["limit"], lambda r: (r["window_start_us"], r["metric"], r["id"]))
    return {
        "model": model.name,
        **body_next(request, response, page),
        "results": [
            {
                "version": versions[r["version_id"]].version,
                "window_start": us_to_datetime(r["window_start_us"]),
                "window_end": us_to_datetime(r["window_end_us"]),
                "metric": r["metric"],
                "column": r["column_name"] or None,
                "label": r["label"] or None,
                "segment": r["segment"] or None,
                "value": r["value"],
                "p_value": r["p_value"],
                "p_adjusted": r["p_adjusted"],
                "effect": r["effect"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "threshold": r["threshold"],
                "band_low": r["band_low"],
                "band_high": r["band_high"],
                "n": r["n"],
                "status": r["status"],
                "detail": r["detail"],
                "run_id": r["run_id"],
                "current": bool(r["current"]),
            }
            for r in page.items
        ],
    }


@router.get("/models/{name}/results")
async def get_results(
    name: str,
    request: Request,
    response: Response,
    monitor: str | None = Query(None, description="only this monitor's results (its name)"),
    metric: str | None = None,
    version: str | None = None,
    column: str | None = None,
    segment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    all_runs: bool = Query(False, description="include results superseded by later runs"),
    limit: int = Query(
        DEFAULT_ROWS, ge=1, le=MAX_ROWS, description=f"page size (default {DEFAULT_ROWS})"
    ),
    cursor: str | None = Query(None, description="the `next` of the previous page"),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Results in pages: `next` (and a `Link` header) carries on where a full page stopped."""
    params = {
        "monitor": monitor,
        "cursor": cursor,
        "metric": metric,
        "version": version,
        "column": column,
        "segment": segment,
        "since": since,
        "until": until,
        "all_runs": all_runs,
        "limit": limit,
    }
    result: dict[str, Any] = await run_in_threadpool(_results, request, response, name, params)
    return result
