"""The audit log (``GET /v1/audit``) and a model's ledger (``GET /v1/models/{name}/ledger``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.http import ApiRoute, BigDbId, Requires
from modelwatch.pages import body_next, cursor_param, decode_cursor, limit_param, page_list, page_of
from modelwatch.store.audit import AuditLog
from modelwatch.store.ledger import Ledger

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["audit"], route_class=ApiRoute)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/audit")
def audit_log(
    request: Request,
    response: Response,
    action: str | None = Query(
        None, description="exact action, or a prefix ending in '.' or '*' (e.g. 'retrain.')"
    ),
    model: str | None = None,
    version: str | None = None,
    actor: str | None = Query(None, description="an API key name, 'config' or 'system'"),
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: BigDbId | None = Query(None, description="only records older than this id"),
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Every change of state, newest first: registrations, alias moves, references,
    monitors, policies, retrains and their deliveries, callbacks, alerts, silences, keys.

    In pages: `next` (and a `Link` header) carries on where a page stopped;
    `next_before_id` is the same place as an id, for clients of `before_id`."""
    after = decode_cursor(cursor, (int,))
    if after is not None:
        before_id = int(after[0]) if before_id is None else min(before_id, int(after[0]))
    records = AuditLog(request.app.state.store).query(
        action=action,
        model=model,
        version=version,
        actor=actor,
        since=_utc(since),
        until=_utc(until),
        before_id=before_id,
        limit=limit + 1,
    )
    page = page_of(records, limit, lambda r: (r.id,))
    return {
        "records": [r.to_json() for r in page.items],
        "next_before_id": page.items[-1].id if page.next else None,
        **body_next(request, response, page),
    }


@router.get("/models/{name}/ledger")
def model_ledger(
    name: str,
    request: Request,
    response: Response,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """When was the model last evaluated, retrained and promoted (and by whom); the
    champion's reference age; champion and challengers with their latest comparison.

    `versions` comes in pages, oldest first: `next` (and a `Link` header) carries on."""
    after = decode_cursor(cursor, (int,))
    ledger = Ledger(request.app.state.store, request.app.state.registry)
    body = ledger.for_model(name)
    page = page_list(body["versions"], lambda v: (v["id"],), after, limit)
    return {**body, "versions": page.items, **body_next(request, response, page)}
