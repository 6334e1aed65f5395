"""Alert routes: /v1/policies, /v1/alerts, /v1/silences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.conditions import needed_metrics
from alerts.routing import inhibited, silenced
from alerts.service import AlertingService
from modelwatch.auth import Principal, silence_author
from modelwatch.domain import Scope
from modelwatch.durations import Duration
from modelwatch.errors import FieldError, NotFoundError, ValidationFailed
from modelwatch.http import ApiRoute, DbId, ORJSONResponse, Requires
from modelwatch.pages import (
    body_next,
    cursor_param,
    decode_cursor,
    limit_param,
    page_list,
    page_of,
)
from modelwatch.pipelines import pipeline_refs
from modelwatch.policies import Matcher, PolicySpec
from modelwatch.storable import INT32_MAX
from modelwatch.store.alerts import FIRING, AlertRecord, SilenceRecord

__all__ = ["router"]

router = APIRouter(
    prefix="/v1", tags=["alerts"], default_response_class=ORJSONResponse, route_class=ApiRoute
)
_STATES = "^(pending|firing|resolved|inactive|all)$"


def _alerting(request: Request) -> AlertingService:
    service: AlertingService = request.app.state.alerting
    return service


def _policy_json(spec: PolicySpec, source: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source": source,
        "spec": spec.model_dump(mode="json", by_alias=True),
    }


@router.get("/policies")
def list_policies(
    request: Request,
    response: Response,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """The config's and the API's policies by name (unique across both), in pages:
    `next` (and a `Link` header) carries on where a page stopped."""
    after = decode_cursor(cursor, (str,))
    service = _alerting(request)
    every = [_policy_json(p, "config") for p in service.config.policies] + [
        _policy_json(p, "api") for p in service.alerts.policies()
    ]
    page = page_list(every, lambda p: (p["name"],), after, limit)
    return {"policies": page.items, **body_next(request, response, page)}


@router.post("/policies", status_code=201)
def create_policy(
    spec: PolicySpec, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    known = set(request.app.state.metric_keys())
    unknown = sorted(needed_metrics(spec.condition) - known)
    if unknown:
        msg = f"unknown metric {unknown[0]!r}; known metrics: {', '.join(sorted(known))}"
        raise ValidationFailed([FieldError(("condition",), msg)])
    _check_model(request, spec.model)
    service = _alerting(request)
    pipelines = [p.name for p in service.config.pipelines]
    missing = [(loc, name) for loc, name in pipeline_refs(spec.actions) if name not in pipelines]
    if missing:
        raise ValidationFailed(
            [
                FieldError(loc, f"no pipeline named {name!r} in the config (known: {pipelines})")
                for loc, name in missing
            ]
        )
    if any(p.name == spec.name for p in service.config.policies):
        raise ValidationFailed([FieldError(("name",), "a policy of that name is in the config")])
    service.alerts.create_policy(spec, who.name)
    return _policy_json(spec, "api")


def _check_model(request: Request, model: str) -> None:
    """A policy watches ``*`` or a registered model: one for an unknown model would never fire."""
    if model == "*":
        return
    try:
        request.app.state.registry.get_model(model)
    except NotFoundError:
        msg = f"no model named {model!r} is registered (or use '*' for every model)"
        raise ValidationFailed([FieldError(("model",), msg, model)]) from None


def _alert_json(a: AlertRecord, silence: SilenceRecord | None, muted: bool) -> dict[str, Any]:
    return {
        "id": a.id,
        "fingerprint": a.fingerprint,
        "state": a.state,
        "labels": a.labels,
        "annotations": a.annotations,
        "value": a.value,
        "threshold": a.threshold,
        "trend": a.trend,
        "consecutive_windows": a.consecutive,
        "started_at": a.started_at,
        "resolved_at": a.resolved_at,
        "updated_at": a.updated_at,
        "silenced_by": silence.id if silence else None,
        "inhibited": muted,
    }


@router.get("/alerts")
def list_alerts(
    request: Request,
    response: Response,
    state: str | None = Query(
        None,
        pattern=_STATES,
        description="only alerts in this state; `all` (as when omitted) is every state, "
        "resolved and inactive included",
    ),
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Alerts by id, in pages: `next` (and a `Link` header) carries on where a page stopped."""
    after = decode_cursor(cursor, (int,), INT32_MAX)
    service = _alerting(request)
    states = None if state in (None, "all") else [str(state)]
    rows = service.alerts.all(states, int(after[0]) if after else None, limit + 1)
    page = page_of(rows, limit, lambda a: (a.id,))
    firing = service.alerts.all([FIRING])
    return {
        "alerts": _alerts_json(service, page.items, firing),
        **body_next(request, response, page),
    }


@router.get("/alerts/{alert_id}")
def get_alert(
    alert_id: DbId, request: Request, _: Principal = Requires(Scope.READ)
) -> dict[str, Any]:
    service = _alerting(request)
    every = service.alerts.all()
    found = next((a for a in every if a.id == alert_id), None)
    if found is None:
        raise NotFoundError(f"no alert with id {alert_id}")
    [body] = _alerts_json(service, [found], every)
    body["transitions"] = service.alerts.transitions(found.id)
    return body


def _alerts_json(
    service: AlertingService, shown: list[AlertRecord], every: list[AlertRecord]
) -> list[dict[str, Any]]:
    """``shown`` with the silence that mutes each now, and whether a firing alert among
    ``every`` inhibits it."""
    firing = [a for a in every if a.state == FIRING]
    silences = service.alerts.silences(active_at=datetime.now(UTC))
    rules = service.config.inhibit_rules
    return [_alert_json(a, silenced(a, silences), inhibited(a, firing, rules)) for a in shown]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[Matcher] = Field(min_length=1)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration: Duration | None = Field(None, description="instead of ends_at, e.g. '2h'")
    created_by: str = Field(min_length=1)
    comment: str = Field(min_length=1)

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"name": k, "value": str(v)} for k, v in value.items()]
        if isinstance(value, list):
            return [Matcher.parse(v).model_dump() if isinstance(v, str) else v for v in value]
        return value


def _silence_json(s: SilenceRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [m.model_dump() for m in s.matchers],
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "created_by": s.created_by,
        "comment": s.comment,
        "created_at": s.created_at,
        "state": s.state(now),
    }


@router.post("/silences", status_code=201)
def create_silence(
    body: SilenceIn, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    now = datetime.now(UTC)
    starts = _aware(body.starts_at) or now
    if body.ends_at is None and body.duration is None:
        raise ValidationFailed([FieldError(("ends_at",), "give ends_at or duration")])
    try:
        ends = _aware(body.ends_at) or starts + timedelta(seconds=body.duration or 0)
    except OverflowError:
        raise ValidationFailed(
            [FieldError(("duration",), "ends after the latest representable time")]
        ) from None
    if ends <= starts:
        raise ValidationFailed([FieldError(("ends_at",), "must be after starts_at")])
    author = silence_author(body.created_by, who)
    silence = _alerting(request).alerts.create_silence(
        body.matchers, starts, ends, author, body.comment
    )
    return _silence_json(silence, now)


@router.get("/silences")
def list_silences(
    request: Request,
    response: Response,
    limit: int = limit_param(),
    cursor: str | None = cursor_param(),
    _: Principal = Requires(Scope.READ),
) -> dict[str, Any]:
    """Silences by id, in pages: `next` (and a `Link` header) carries on where a page stopped."""
    after = decode_cursor(cursor, (int,), INT32_MAX)
    now = datetime.now(UTC)
    rows = _alerting(request).alerts.silence_page(int(after[0]) if after else None, limit + 1)
    page = page_of(rows, limit, lambda s: (s.id,))
    return {
        "silences": [_silence_json(s, now) for s in page.items],
        **body_next(request, response, page),
    }


@router.delete("/silences/{silence_id}")
def delete_silence(
    silence_id: DbId, request: Request, who: Principal = Requires(Scope.ADMIN)
) -> dict[str, Any]:
    silence = _alerting(request).alerts.expire_silence(silence_id, who.name)
    return _silence_json(silence, datetime.now(UTC))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
