"""The audit log (``GET /v1/audit``) and a model's ledger (``GET /v1/models/{name}/ledger``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from modelwatch.auth import Principal
from modelwatch.domain import Scope
from modelwatch.http import ApiRoute, BigDbId, Requires
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
    action: str | None = Query(
        None, description="exact action, or a prefix ending in '.' or '*' (e.g. 'retrain.')"
    ),
    model: str | None = None,
    version: str | None = None,
    actor: str | None = Query(None, description="an API key name, 'config' or 'system'"),
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: BigDbId | None = Query(None, description="page: records older than this id"),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Every change of state, newest first: registrations, alias moves, references,
    monitors, policies, retrains and their deliveries, callbacks, alerts, silences, keys."""
    records = AuditLog(request.app.state.store).query(
        action=action,
        model=model,
        version=version,
        actor=actor,
        since=_utc(since),
        until=_utc(until),
        before_id=before_id,
        limit=limit,
    )
    out = [r.to_json() for r in records]
    return {"records": out, "next_before_id": out[-1]["id"] if len(out) == limit else None}


@router.get("/models/{name}/ledger")
def model_ledger(
    name: str, request: Request, _: Principal = Requires(Scope.READ)
) -> dict[str, Any]:
    """When was the model last evaluated, retrained and promoted (and by whom); the
    champion's reference age; champion and challengers with their latest comparison."""
    ledger = Ledger(request.app.state.store, request.app.state.registry)
    return ledger.for_model(name)
