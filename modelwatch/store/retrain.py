"""Retrain requests, pipeline endpoint state and approvals.

A retrain request is written, with its outbox delivery and audit record, in one
transaction that first locks the model's cooldown row: however many workers see
the same firing alert, one request is made per alert episode (``trigger_key`` is
unique), none while another retrain of the model is in flight, and none within
the policy's cooldown. Requests that were held back are kept too, as
``suppressed``, with the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select, union_all, update

from modelwatch.errors import ConflictError, NotFoundError
from modelwatch.outbox import Outbox
from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.paging import keyset
from modelwatch.timeutil import utcnow

__all__ = [
    "IN_FLIGHT",
    "PIPELINE_DELIVERY",
    "RetrainRequest",
    "RetrainStore",
    "TriggerSpec",
]

PIPELINE_DELIVERY = "pipeline"
REQUESTED, DELIVERED, RUNNING = "requested", "delivered", "running"
COMPLETED, FAILED, DEAD, SUPPRESSED = "completed", "failed", "dead", "suppressed"
IN_FLIGHT = (REQUESTED, DELIVERED, RUNNING)


@dataclass(frozen=True)
class RetrainRequest:
    id: int
    uid: str
    model_id: int
    version_id: int | None
    policy: str
    pipeline: str
    alert_id: int | None
    status: str
    reason: str
    window_start_us: int | None
    window_end_us: int | None
    progress: float | None
    new_version_id: int | None
    requested_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        for key in ("requested_at", "updated_at", "completed_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


def _request(row: Row[Any]) -> RetrainRequest:
    m = row._mapping
    return RetrainRequest(**{f: m[f] for f in RetrainRequest.__dataclass_fields__})


@dataclass(frozen=True)
class TriggerSpec:
    """What a firing alert asks for; ``payload`` is the webhook body, sent as it is."""

    trigger_key: str
    uid: str
    model_id: int
    model: str
    version_id: int | None
    version: str | None
    policy: str
    pipeline: str
    alert_id: int | None
    window_start_us: int | None
    window_end_us: int | None
    cooldown_s: int
    max_age_s: int
    payload: Mapping[str, Any]


class RetrainStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.outbox = Outbox(store)

    # --- requests ------------------------------------------------------------
    def request(self, spec: TriggerSpec) -> RetrainRequest | None:
        """Decide and record a retrain for one alert episode; None if already decided."""
        now = utcnow()
        with self.store.write() as conn:
            known = select(t.retrain_requests.c.id).where(
                t.retrain_requests.c.trigger_key == spec.trigger_key
            )
            if conn.execute(known).first():
                return None
            last = self._lock_cooldown(conn, spec.model_id, spec.policy)
            reason = self._held_back(conn, spec, last, now)
            status = SUPPRESSED if reason else REQUESTED
            request_id = conn.execute(
                t.retrain_requests.insert().values(
                    uid=spec.uid,
                    trigger_key=spec.trigger_key,
                    model_id=spec.model_id,
                    version_id=spec.version_id,
                    policy=spec.policy,
                    pipeline=spec.pipeline,
                    alert_id=spec.alert_id,
                    status=status,
                    reason=reason or "",
                    window_start_us=spec.window_start_us,
                    window_end_us=spec.window_end_us,
                    requested_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if not reason:
                self._enqueue(conn, spec, now)
            audit.record(
                conn,
                audit.SYSTEM,
                f"retrain.{status}",
                model=spec.model,
                version=spec.version,
                subject=spec.uid,
                details={"policy": spec.policy, "pipeline": spec.pipeline, "reason": reason},
                at=now,
            )
        return self.get(int(request_id))

    def _lock_cooldown(self, conn: Connection, model_id: int, policy: str) -> datetime | None:
        c = t.retrain_cooldowns
        insert = self.store.insert(c)
        conn.execute(insert.values(model_id=model_id, policy=policy).on_conflict_do_nothing())
        query = select(c.c.last_requested_at).where(c.c.model_id == model_id, c.c.policy == policy)
        if self.store.is_postgres:
            query = query.with_for_update()
        last: datetime | None = conn.execute(query).scalar_one()
        return last

    def _held_back(
        self, conn: Connection, spec: TriggerSpec, last: datetime | None, now: datetime
    ) -> str | None:
        r = t.retrain_requests
        running = conn.execute(
            select(r.c.uid).where(r.c.model_id == spec.model_id, r.c.status.in_(IN_FLIGHT))
        ).first()
        if running is not None:
            return f"retrain {running.uid} of {spec.model!r} is still in flight"
        disabled = self.disabled_reason(conn, spec.pipeline)
        if disabled is not None:
            return f"pipeline {spec.pipeline!r} is disabled: {disabled}"
        if last is not None and now - last < timedelta(seconds=spec.cooldown_s):
            return f"cooldown: the last retrain for this policy was requested at {last.isoformat()}"
        return None

    def _enqueue(self, conn: Connection, spec: TriggerSpec, now: datetime) -> None:
        conn.execute(
            update(t.retrain_cooldowns)
            .where(
                t.retrain_cooldowns.c.model_id == spec.model_id,
                t.retrain_cooldowns.c.policy == spec.policy,
            )
            .values(last_requested_at=now)
        )
        self.outbox.enqueue(
            conn,
            kind=PIPELINE_DELIVERY,
            stream=f"pipeline:{spec.uid}",
            target=spec.pipeline,
            idempotency_key=spec.uid,
            payload=dict(spec.payload),
            max_age_s=spec.max_age_s,
        )

    def decided(self, keys: Collection[str]) -> set[str]:
        """Which trigger keys have a retrain request or an approval already."""
        if not keys:
            return set()
        r, a = t.retrain_requests, t.approvals
        query = union_all(
            select(r.c.trigger_key).where(r.c.trigger_key.in_(keys)),
            select(a.c.trigger_key).where(a.c.trigger_key.in_(keys)),
        )
        with self.store.read() as conn:
            return {row[0] for row in conn.execute(query)}

    def get(self, request_id: int) -> RetrainRequest:
        r = t.retrain_requests
        with self.store.read() as conn:
            row = conn.execute(select(r).where(r.c.id == request_id)).first()
        if row is None:
            raise NotFoundError(f"no retrain request with id {request_id}")
        return _request(row)

    def by_uid(self, uid: str) -> RetrainRequest:
        r = t.retrain_requests
        with self.store.read() as conn:
            row = conn.execute(select(r).where(r.c.uid == uid)).first()
        if row is None:
            raise NotFoundError(f"no retrain request {uid!r}")
        return _request(row)

    def recent(
        self, model_id: int | None = None, limit: int = 100, before: int | None = None
    ) -> list[RetrainRequest]:
        """Requests newest first, older than ``before``."""
        r = t.retrain_requests
        query = keyset(select(r), r.c.id, before, limit, newest_first=True)
        if model_id is not None:
            query = query.where(r.c.model_id == model_id)
        with self.store.read() as conn:
            return [_request(row) for row in conn.execute(query)]

    def set_status(
        self,
        conn: Connection,
        uid: str,
        status: str,
        *,
        only_from: tuple[str, ...] = IN_FLIGHT,
        **values: Any,
    ) -> bool:
        """Move a request to ``status`` if it is in one of ``only_from``; False otherwise."""
        r = t.retrain_requests
        now = utcnow()
        if status in (COMPLETED, FAILED, DEAD):
            values.setdefault("completed_at", now)
        done = conn.execute(
            update(r)
            .where(r.c.uid == uid, r.c.status.in_(only_from))
            .values(status=status, updated_at=now, **values)
        )
        return bool(done.rowcount)

    # --- pipeline endpoints ----------------------------------------------------
    def disable_endpoint(self, conn: Connection, name: str, reason: str) -> None:
        e = t.pipeline_endpoints
        now = utcnow()
        insert = self.store.insert(e)
        conn.execute(
            insert.values(
                name=name, disabled_at=now, disabled_reason=reason, updated_at=now
            ).on_conflict_do_update(
                index_elements=[e.c.name],
                set_={"disabled_at": now, "disabled_reason": reason, "updated_at": now},
            )
        )
        audit.record(
            conn, audit.SYSTEM, "pipeline.disabled", subject=name, details={"reason": reason}
        )

    def enable_endpoint(self, name: str, actor: str) -> None:
        e = t.pipeline_endpoints
        with self.store.write() as conn:
            conn.execute(
                update(e).where(e.c.name == name).values(disabled_at=None, updated_at=utcnow())
            )
            audit.record(conn, actor, "pipeline.enabled", subject=name)

    def disabled_reason(self, conn: Connection, name: str) -> str | None:
        """Why the endpoint is disabled, or None while it is enabled."""
        e = t.pipeline_endpoints
        row = conn.execute(
            select(e.c.disabled_reason).where(e.c.name == name, e.c.disabled_at.is_not(None))
        ).first()
        return None if row is None else str(row.disabled_reason)

    def disabled_endpoints(self) -> dict[str, dict[str, Any]]:
        e = t.pipeline_endpoints
        with self.store.read() as conn:
            rows = conn.execute(select(e).where(e.c.disabled_at.is_not(None)))
            return {
                r.name: {"disabled_at": r.disabled_at, "reason": r.disabled_reason} for r in rows
            }

    # --- approvals -------------------------------------------------------------
    def create_approval(
        self,
        conn: Connection,
        *,
        model_id: int,
        version_id: int,
        policy: str,
        trigger_key: str,
        status: str,
        details: Mapping[str, Any],
        decided_by: str | None = None,
    ) -> int | None:
        """Record a promotion decision (``pending`` or already ``approved``); None if this
        trigger was recorded before or the version already has a pending approval."""
        a = t.approvals
        now = utcnow()
        insert = self.store.insert(a)
        row = conn.execute(
            insert.values(
                model_id=model_id,
                version_id=version_id,
                policy=policy,
                action="promote",
                status=status,
                pending_key=f"{model_id}:{version_id}" if status == "pending" else None,
                trigger_key=trigger_key,
                details=orjson.dumps(dict(details)).decode(),
                requested_at=now,
                decided_at=None if status == "pending" else now,
                decided_by=decided_by,
                comment="",
            )
            .on_conflict_do_nothing()
            .returning(a.c.id)
        ).first()
        return None if row is None else int(row.id)

    def decide(
        self, conn: Connection, approval_id: int, approve: bool, actor: str, comment: str
    ) -> Row[Any]:
        a = t.approvals
        row = conn.execute(select(a).where(a.c.id == approval_id)).first()
        if row is None:
            raise NotFoundError(f"no approval with id {approval_id}")
        if row.status != "pending":
            raise ConflictError(f"approval {approval_id} was already {row.status}")
        conn.execute(
            update(a)
            .where(a.c.id == approval_id)
            .values(
                status="approved" if approve else "rejected",
                pending_key=None,
                decided_at=utcnow(),
                decided_by=actor,
                comment=comment,
            )
        )
        return row

    def approvals(
        self,
        model_id: int | None = None,
        status: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Approvals newest first, older than ``before``."""
        a = t.approvals
        query = keyset(select(a), a.c.id, before, limit, newest_first=True)
        if model_id is not None:
            query = query.where(a.c.model_id == model_id)
        if status is not None:
            query = query.where(a.c.status == status)
        with self.store.read() as conn:
            return [
                {**dict(r._mapping), "details": orjson.loads(r.details)}
                for r in conn.execute(query)
            ]
