"""The outbox: side effects are written here first, then delivered by a worker.

Each delivery belongs to a ``stream`` (e.g. one alert group at one receiver)
and is delivered only after every earlier delivery of its stream, so updates
follow the messages they update. Workers claim due deliveries with ``FOR
UPDATE SKIP LOCKED`` (PostgreSQL), so each is sent by one worker; every
attempt is recorded; failures are retried with exponential backoff and
jitter (or after the receiver's ``Retry-After``) until the delivery's maximum
age, when it is marked ``dead``. The backoff is capped at a minute: a receiver
that comes back after a long outage is probed again within about a minute, not
after the ten minutes a longer cap would leave its queue waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy import Connection, Row, and_, exists, func, select, update

from modelwatch.settings import ENV_DELIVERY_LEASE_S, lease_seconds
from modelwatch.store import tables as t
from modelwatch.store.claims import claim_one
from modelwatch.store.engine import Store
from modelwatch.telemetry import DELIVERY_ATTEMPTS
from modelwatch.timeutil import utcnow

__all__ = [
    "Delivery",
    "DeliveryOutcome",
    "DeliveryWorker",
    "Handler",
    "Outbox",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"
DELIVERY_LEASE_S = 120.0
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class DeliveryOutcome:
    """How one attempt went. ``ok`` means delivered; otherwise the worker retries
    after ``retry_after`` seconds (or its own backoff) unless ``permanent``.
    ``thread`` is kept for later deliveries of the same stream (e.g. Slack ``ts``)."""

    ok: bool
    detail: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    permanent: bool = False
    thread: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    id: int
    kind: str
    stream: str
    target: str
    idempotency_key: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    expires_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        m["id"],
        m["kind"],
        m["stream"],
        m["target"],
        m["idempotency_key"],
        orjson.loads(m["payload"]),
        m["status"],
        m["attempts"],
        m["next_attempt_at"],
        m["expires_at"],
        m["created_at"],
        m["delivered_at"],
        m["last_error"],
    )


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 5.0
    multiplier: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2

    def delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempts - 1))
        return base * (1 + self.jitter * (2 * random.random() - 1))


class Outbox:
    def __init__(self, store: Store, lease_s: float | None = None) -> None:
        """``lease_s``: default ``MODELWATCH_DELIVERY_LEASE_S``, else 2 minutes."""
        self.store = store
        if lease_s is None:
            lease_s = lease_seconds(ENV_DELIVERY_LEASE_S, DELIVERY_LEASE_S)
        self.lease = timedelta(seconds=lease_s)

    def enqueue(
        self,
        conn: Connection,
        *,
        kind: str,
        stream: str,
        target: str,
        idempotency_key: str,
        payload: Mapping[str, Any],
        max_age_s: float,
        not_before: datetime | None = None,
    ) -> bool:
        """Add a delivery in the caller's transaction; False if the key exists already."""
        now = utcnow()
        insert = self.store.insert(t.deliveries)
        stmt = insert.values(
            kind=kind,
            stream=stream,
            target=target,
            idempotency_key=idempotency_key,
            payload=orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode(),
            status=PENDING,
            attempts=0,
            next_attempt_at=not_before or now,
            expires_at=now + timedelta(seconds=max_age_s),
            created_at=now,
        ).on_conflict_do_nothing()
        return bool(conn.execute(stmt.returning(t.deliveries.c.id)).first())

    def claim(self, worker: str, kinds: list[str] | None = None) -> Delivery | None:
        """The oldest due delivery whose stream has nothing earlier still undelivered."""
        d = t.deliveries
        earlier = t.deliveries.alias("earlier")
        now = utcnow()
        due = (d.c.status == PENDING) | and_(
            d.c.status == SENDING, d.c.claimed_at < now - self.lease
        )
        blocked = exists().where(
            earlier.c.stream == d.c.stream,
            earlier.c.id < d.c.id,
            earlier.c.status.in_([PENDING, SENDING]),
        )
        pick = select(d.c.id).where(due, d.c.next_attempt_at <= now, ~blocked)
        if kinds is not None:
            pick = pick.where(d.c.kind.in_(kinds))
        row = claim_one(
            self.store,
            d,
            pick.order_by(d.c.next_attempt_at, d.c.id),
            status=SENDING,
            claimed_by=worker,
            claimed_at=now,
            attempts=d.c.attempts + 1,
        )
        return _delivery(row) if row is not None else None

    def record(
        self,
        delivery: Delivery,
        outcome: DeliveryOutcome,
        started: datetime,
        duration_ms: float,
        retry: RetryPolicy,
    ) -> str:
        """Store the attempt and the delivery's next state; returns that state.

        The attempt is always kept; the state is left alone (and returned as it is)
        when the claim is no longer this one's: its lease ran out and another worker
        took the delivery over, so a late failure here cannot undo its success.
        """
        now = utcnow()
        values: dict[str, Any] = {"claimed_by": None, "claimed_at": None}
        if outcome.ok:
            status = DELIVERED
            values.update(delivered_at=now, last_error=None)
        else:
            wait = retry.delay(delivery.attempts, outcome.retry_after)
            next_at = now + timedelta(seconds=wait)
            status = DEAD if outcome.permanent or next_at > delivery.expires_at else PENDING
            values.update(next_attempt_at=next_at, last_error=outcome.detail[:2000])
        with self.store.write() as conn:
            conn.execute(
                t.delivery_attempts.insert().values(
                    delivery_id=delivery.id,
                    attempt=delivery.attempts,
                    started_at=started,
                    duration_ms=duration_ms,
                    ok=int(outcome.ok),
                    status_code=outcome.status_code,
                    retry_after=outcome.retry_after,
                    detail=outcome.detail[:2000],
                )
            )
            d = t.deliveries
            mine = d.c.status == SENDING, d.c.attempts == delivery.attempts
            changed = conn.execute(
                update(d).where(d.c.id == delivery.id, *mine).values(status=status, **values)
            )
            if changed.rowcount == 0:
                return str(conn.execute(select(d.c.status).where(d.c.id == delivery.id)).scalar())
        return status

    def get(self, delivery_id: int) -> Delivery:
        with self.store.read() as conn:
            row = conn.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id)).one()
        return _delivery(row)

    def attempts(self, delivery_id: int) -> list[dict[str, Any]]:
        a = t.delivery_attempts
        with self.store.read() as conn:
            rows = conn.execute(
                select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.attempt)
            )
            return [dict(r._mapping) for r in rows]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        d = t.deliveries
        query = select(d.c.status, func.count()).group_by(d.c.status)
        if kind is not None:
            query = query.where(d.c.kind == kind)
        with self.store.read() as conn:
            return {s: int(n) for s, n in conn.execute(query)}


class Handler(Protocol):
    """Delivers one kind of outbox entry; must not raise for delivery problems."""

    def __call__(self, delivery: Delivery) -> DeliveryOutcome: ...


class DeliveryWorker:
    """Drains the outbox with the handler registered for each kind. Never raises."""

    def __init__(
        self,
        outbox: Outbox,
        handlers: Mapping[str, Handler],
        worker: str,
        retry: RetryPolicy | None = None,
        on_delivered: Callable[[Delivery, DeliveryOutcome], None] | None = None,
        on_dead: Callable[[Delivery, DeliveryOutcome], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.handlers = dict(handlers)
        self.worker = worker
        self.retry = retry or RetryPolicy()
        self.on_delivered = on_delivered
        self.on_dead = on_dead

    def run_one(self) -> Delivery | None:
        try:
            delivery = self.outbox.claim(self.worker, list(self.handlers))
        except Exception:
            log.exception("claiming a delivery failed")
            return None
        if delivery is None:
            return None
        attributes: dict[str, str | int] = {
            "modelwatch.delivery.id": delivery.id,
            "modelwatch.delivery.kind": delivery.kind,
            "modelwatch.delivery.target": delivery.target,
            "modelwatch.delivery.attempt": delivery.attempts,
        }
        with _tracer.start_as_current_span(
            f"delivery {delivery.kind}", attributes=attributes
        ) as span:
            started, clock = utcnow(), time.perf_counter()
            try:
                outcome = self.handlers[delivery.kind](delivery)
            except Exception as exc:  # a handler bug is a failed attempt, never a crash
                log.exception("delivery %s failed", delivery.id)
                outcome = DeliveryOutcome(ok=False, detail=f"{type(exc).__name__}: {exc}")
            result = "delivered" if outcome.ok else "failed"
            span.set_attribute("modelwatch.delivery.outcome", result)
            if not outcome.ok:
                span.set_status(StatusCode.ERROR, outcome.detail[:200])
            DELIVERY_ATTEMPTS.add(
                1,
                {"modelwatch.delivery.kind": delivery.kind, "modelwatch.delivery.outcome": result},
            )
            try:
                state = self.outbox.record(
                    delivery, outcome, started, (time.perf_counter() - clock) * 1000, self.retry
                )
                span.set_attribute("modelwatch.delivery.state", state)
                if outcome.ok and self.on_delivered is not None:
                    self.on_delivered(delivery, outcome)
                if state == DEAD and self.on_dead is not None:
                    self.on_dead(delivery, outcome)
            except Exception:
                log.exception(
                    "recording delivery %s failed; its lease will expire and it retries",
                    delivery.id,
                )
        return delivery

    def drain(self, budget_s: float = 10.0) -> int:
        deadline = time.monotonic() + budget_s
        done = 0
        while time.monotonic() < deadline and self.run_one() is not None:
            done += 1
        return done
