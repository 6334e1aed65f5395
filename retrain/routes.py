"""Retrain API: pipeline callbacks, retrain requests, approvals, pipeline endpoints."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.errors import FieldError, NotFoundError, ValidationFailed
from modelwatch.http import ApiRoute, DbId, Requires, parse_json, read_body, require
from modelwatch.pages import (
    body_next,
    cursor_param,
    decode_cursor,
    limit_param,
    page_list,
    page_of,
)
from modelwatch.settings import Settings
from modelwatch.storable import INT32_MAX
from modelwatch.webhooks import HEADER_SIGNATURE
from retrain.callback import CallbackIn, CallbackService
from retrain.callback_auth import read_signed, sender_of
from retrain.service import RetrainService

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["retrain"], route_class=ApiRoute)


def _service(request: Request) -> RetrainService:
    service: RetrainService = request.app.state.retrain
    return service


@router.post(
    "/retrain/callback",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallbackIn"}}}
        }
    },
)
async def retrain_callback(request: Request) -> dict[str, Any]:
    """A pipeline reports progress, failure, or its new version (with reference data).

    Signed like the webhook it answers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature`` with the pipeline's secret), or sent with an admin key; either
    is checked before the body is parsed. A signed callback is applied once per
    ``webhook-id``: a copy is answered with the retrain's current state."""
    settings: Settings = request.app.state.settings
    service = _service(request)
    callbacks: CallbackService = request.app.state.retrain_callbacks
    if not request.headers.get(HEADER_SIGNATURE):
        actor = (await require(Scope.ADMIN)(request)).name
        callback = _callback(await read_body(request, settings.max_reference_bytes))
        return await run_in_threadpool(callbacks.handle, callback, actor)
    senders = {p.name: p.secrets for p in service.sender.pipelines.values()}
    signed = await read_signed(request, senders, settings.max_reference_bytes)
    callback = _callback(signed.body)
    retrain = await run_in_threadpool(service.retrain.by_uid, callback.retrain_id)
    receipt = sender_of(signed, retrain)
    result: dict[str, Any] = await run_in_threadpool(
        callbacks.handle, callback, receipt.source, receipt
    )
    return result


def _callback(body: bytes) -> CallbackIn:
    try:
        return CallbackIn.model_validate(parse_json(body))
    except ValidationError as exc:
        raise ValidationFailed(
            [FieldError(tuple(e["loc"]), e["msg"], e.get("input")) for e in exc.errors()]
        ) from None


@router.get("/retrain")
def list_retrains(
    request: Request,
    response: Response,
    model: str | None = None,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Retrain requests, newest first, in pages: `next` (and a `Link` header) carries on."""
    after = decode_cursor(cursor, (int,), INT32_MAX)
    service = _service(request)
    model_id = request.app.state.registry.get_model(model).id if model else None
    rows = service.retrain.recent(model_id, limit + 1, int(after[0]) if after else None)
    page = page_of(rows, limit, lambda r: (r.id,))
    return {"retrains": [r.to_json() for r in page.items], **body_next(request, response, page)}


@router.get("/approvals")
def list_approvals(
    request: Request,
    response: Response,
    status: Literal["pending", "approved", "rejected"] | None = None,
    model: str | None = None,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Approvals, newest first, in pages: `next` (and a `Link` header) carries on."""
    after = decode_cursor(cursor, (int,), INT32_MAX)
    service = _service(request)
    model_id = request.app.state.registry.get_model(model).id if model else None
    before = int(after[0]) if after else None
    rows = service.retrain.approvals(model_id, status, before, limit + 1)
    page = page_of(rows, limit, lambda a: (a["id"],))
    return {"approvals": page.items, **body_next(request, response, page)}


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = ""


@router.post("/approvals/{approval_id}")
def decide_approval(
    approval_id: DbId, body: DecisionIn, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    """Approve (promote now) or reject a pending promotion."""
    return _service(request).promoter.decide(
        approval_id, body.decision == "approve", who.name, body.comment
    )


@router.get("/pipelines")
def list_pipelines(
    request: Request,
    response: Response,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """The config's pipeline endpoints by name, in pages: `next` (and a `Link` header)
    carries on where a page stopped."""
    after = decode_cursor(cursor, (str,))
    service = _service(request)
    disabled = service.retrain.disabled_endpoints()
    every: list[dict[str, Any]] = [
        {
            "name": p.name,
            "url": p.url,
            "max_age": p.max_age,
            "secrets": len(p.secrets),
            "disabled": disabled.get(p.name),
        }
        for p in service.sender.pipelines.values()
    ]
    page = page_list(every, lambda p: (p["name"],), after, limit)
    return {"pipelines": page.items, **body_next(request, response, page)}


@router.post("/pipelines/{name}/enable")
def enable_pipeline(
    name: str, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    """Re-enable an endpoint disabled by a 410 Gone."""
    service = _service(request)
    if name not in service.sender.pipelines:
        raise NotFoundError(f"no pipeline named {name!r}")
    service.retrain.enable_endpoint(name, who.name)
    return {"name": name, "disabled": None}
