"""``GET /v1/runs/{id}/report``: the evidently drill-down report of an evaluation run."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from dashboards.reports import ReportFailed, ReportService, ReportStatus
from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.http import ApiRoute, BigDbId, ORJSONResponse, Requires

__all__ = ["MAX_WAIT_S", "RETRY_AFTER_S", "router"]

MAX_WAIT_S = 60.0
RETRY_AFTER_S = 5

router = APIRouter(prefix="/v1", tags=["reports"], route_class=ApiRoute)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "the report"},
    202: {"description": "generating; ask again after Retry-After seconds"},
    404: {"description": "no such run"},
    500: {"description": "generating the report failed; the detail names the cause"},
}


@router.get("/runs/{run_id}/report", response_class=HTMLResponse, responses=_RESPONSES)
async def run_report(
    request: Request,
    run_id: BigDbId,
    wait: bool = Query(False, description=f"wait up to {MAX_WAIT_S:.0f} s for the report"),
    _: Principal = Requires(Scope.READ),
) -> Response:
    """The run's window against its baseline as an evidently HTML report: data drift and,
    where labels have arrived, classification or regression quality. Generated in the
    background on first request (202 with ``Retry-After``), then served from the cache."""
    service: ReportService = request.app.state.reports
    status = await run_in_threadpool(service.request, run_id)
    if wait and status.pending is not None:
        # asyncio.wait neither raises nor cancels the generation when the time is up.
        pending = asyncio.wrap_future(status.pending)
        done, _pending = await asyncio.wait({pending}, timeout=MAX_WAIT_S)
        if done and not pending.cancelled() and (error := pending.result()) is not None:
            service.forget_failure(status.run_id, status.state_key)
            raise ReportFailed(error)
        if done:
            status = await run_in_threadpool(service.request, run_id)
    return _answer(status)


def _answer(status: ReportStatus) -> Response:
    if status.state == "ready":
        return HTMLResponse(status.html)
    if status.state == "failed":
        raise ReportFailed(status.error)
    body = {
        "status": "generating",
        "run_id": status.run_id,
        "detail": f"the report is being generated; ask again in {RETRY_AFTER_S} s "
        "(or add ?wait=true)",
    }
    return ORJSONResponse(body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_S)})
