"""Alerts, their transitions, silences, notification groups and API-made policies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select, update

from modelwatch.errors import ConflictError, NotFoundError
from modelwatch.policies import Matcher, PolicySpec
from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.paging import keyset
from modelwatch.timeutil import utcnow

__all__ = [
    "LEAD_VERSION",
    "AlertRecord",
    "AlertStore",
    "GroupRecord",
    "SilenceRecord",
    "fingerprint",
]

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
# The annotation naming a traffic stream alert's lead version (the one whose results gave
# its verdict): such an alert has labels ``stream`` and ``versions`` instead of ``version``.
LEAD_VERSION = "lead_version"


def fingerprint(labels: dict[str, str]) -> str:
    """An alert's identity: a hash of its sorted label set."""
    return hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


@dataclass(frozen=True)
class AlertRecord:
    id: int
    fingerprint: str
    policy: str
    model: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    value: float | None
    threshold: float | None
    trend: list[float]
    consecutive: int
    window_start_us: int | None
    started_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime


def _alert(row: Row[Any]) -> AlertRecord:
    m = row._mapping
    return AlertRecord(
        m["id"],
        m["fingerprint"],
        m["policy"],
        m["model"],
        orjson.loads(m["labels"]),
        orjson.loads(m["annotations"]),
        m["state"],
        m["value"],
        m["threshold"],
        orjson.loads(m["trend"]),
        m["consecutive"],
        m["window_start_us"],
        m["started_at"],
        m["resolved_at"],
        m["updated_at"],
    )


@dataclass(frozen=True)
class SilenceRecord:
    id: int
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        """``expired``, ``active`` or ``pending`` (not started yet) at ``now``."""
        if self.expired_at or self.ends_at <= now:
            return "expired"
        return "active" if self.active(now) else "pending"

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def _silence(row: Row[Any]) -> SilenceRecord:
    m = row._mapping
    matchers = [Matcher.model_validate(x) for x in orjson.loads(m["matchers"])]
    return SilenceRecord(
        m["id"],
        matchers,
        m["starts_at"],
        m["ends_at"],
        m["created_by"],
        m["comment"],
        m["created_at"],
        m["expired_at"],
    )


@dataclass(frozen=True)
class GroupRecord:
    id: int
    receiver: str
    group_key: str
    labels: dict[str, str]
    first_seen_at: datetime
    last_notified_at: datetime | None
    notified_state: dict[str, str]
    thread: dict[str, Any]


def _group(row: Row[Any]) -> GroupRecord:
    m = row._mapping
    return GroupRecord(
        m["id"],
        m["receiver"],
        m["group_key"],
        orjson.loads(m["labels"]),
        m["first_seen_at"],
        m["last_notified_at"],
        orjson.loads(m["notified_state"]),
        orjson.loads(m["thread"]),
    )


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class AlertStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- alerts --------------------------------------------------------------
    def all(
        self, states: list[str] | None = None, after: int | None = None, limit: int | None = None
    ) -> list[AlertRecord]:
        """Alerts by id (in ``states`` when given); ``after``/``limit`` give a page."""
        query = keyset(select(t.alerts), t.alerts.c.id, after, limit)
        if states:
            query = query.where(t.alerts.c.state.in_(states))
        with self.store.read() as conn:
            return [_alert(r) for r in conn.execute(query)]

    def by_fingerprint(self, conn: Connection, fp: str) -> AlertRecord | None:
        row = conn.execute(select(t.alerts).where(t.alerts.c.fingerprint == fp)).first()
        return None if row is None else _alert(row)

    def for_policy(self, policy: str) -> dict[str, AlertRecord]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.alerts).where(t.alerts.c.policy == policy))
            return {r.fingerprint: _alert(r) for r in rows}

    def save(
        self, conn: Connection, new: dict[str, Any], old: AlertRecord | None, cause: str
    ) -> None:
        """Insert or update an alert (``new`` holds its columns) and record a state change."""
        now = utcnow()
        values = {
            **new,
            "labels": _json(new["labels"]),
            "annotations": _json(new["annotations"]),
            "trend": _json(new["trend"]),
            "updated_at": now,
        }
        was = old.state if old is not None else INACTIVE
        if new["state"] in (PENDING, FIRING) and was in (INACTIVE, RESOLVED):
            values.update(started_at=now, resolved_at=None)  # a new episode of this alert
        elif new["state"] == RESOLVED and was != RESOLVED:
            values["resolved_at"] = now
        if old is None:
            alert_id = conn.execute(t.alerts.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
            from_state = INACTIVE
        else:
            conn.execute(update(t.alerts).where(t.alerts.c.id == old.id).values(**values))
            alert_id, from_state = old.id, old.state
        if from_state != new["state"] and new["state"] in (FIRING, RESOLVED):
            audit.record(
                conn,
                audit.SYSTEM,
                f"alert.{new['state']}",
                model=new["model"],
                version=new["labels"].get("version"),
                subject=new["policy"],
                details={"alert_id": alert_id, "labels": new["labels"], "cause": cause},
                at=now,
            )
        if from_state != new["state"]:
            conn.execute(
                t.alert_transitions.insert().values(
                    alert_id=alert_id,
                    from_state=from_state,
                    to_state=new["state"],
                    at=utcnow(),
                    cause=cause,
                )
            )

    def transitions(self, alert_id: int) -> list[dict[str, Any]]:
        tr = t.alert_transitions
        with self.store.read() as conn:
            rows = conn.execute(select(tr).where(tr.c.alert_id == alert_id).order_by(tr.c.id))
            return [dict(r._mapping) for r in rows]

    # --- silences ------------------------------------------------------------
    def create_silence(
        self,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        author: str,
        comment: str,
    ) -> SilenceRecord:
        with self.store.write() as conn:
            silence_id = conn.execute(
                t.silences.insert().values(
                    matchers=_json([m.model_dump() for m in matchers]),
                    starts_at=starts_at,
                    ends_at=ends_at,
                    created_by=author,
                    comment=comment,
                    created_at=utcnow(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            audit.record(
                conn,
                author,
                "silence.created",
                subject=str(silence_id),
                details={
                    "matchers": [f"{m.name}{m.op}{m.value}" for m in matchers],
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "comment": comment,
                },
            )
        return self.get_silence(int(silence_id))

    def get_silence(self, silence_id: int) -> SilenceRecord:
        with self.store.read() as conn:
            row = conn.execute(select(t.silences).where(t.silences.c.id == silence_id)).first()
        if row is None:
            raise NotFoundError(f"no silence with id {silence_id}")
        return _silence(row)

    def expire_silence(self, silence_id: int, actor: str = audit.SYSTEM) -> SilenceRecord:
        silence = self.get_silence(silence_id)
        if silence.expired_at is None:
            with self.store.write() as conn:
                conn.execute(
                    update(t.silences)
                    .where(t.silences.c.id == silence_id)
                    .values(expired_at=utcnow())
                )
                audit.record(conn, actor, "silence.expired", subject=str(silence_id))
        return self.get_silence(silence_id)

    def silences(self, active_at: datetime | None = None) -> list[SilenceRecord]:
        rows = self.silence_page()
        return [s for s in rows if active_at is None or s.active(active_at)]

    def silence_page(
        self, after: int | None = None, limit: int | None = None
    ) -> list[SilenceRecord]:
        """Silences by id; ``after``/``limit`` give a page."""
        query = keyset(select(t.silences), t.silences.c.id, after, limit)
        with self.store.read() as conn:
            return [_silence(r) for r in conn.execute(query)]

    # --- groups --------------------------------------------------------------
    def group(
        self, receiver: str, key: str, labels: dict[str, str], now: datetime | None = None
    ) -> GroupRecord:
        g = t.alert_groups
        with self.store.write() as conn:
            row = conn.execute(
                select(g).where(g.c.receiver == receiver, g.c.group_key == key)
            ).first()
            if row is None:
                # Another worker may make the same group at the same moment: keep theirs.
                insert = self.store.insert(g)
                conn.execute(
                    insert.values(
                        receiver=receiver,
                        group_key=key,
                        labels=_json(labels),
                        first_seen_at=now or utcnow(),
                        notified_state="{}",
                        thread="{}",
                    ).on_conflict_do_nothing()
                )
                row = conn.execute(
                    select(g).where(g.c.receiver == receiver, g.c.group_key == key)
                ).one()
        return _group(row)

    def get_group(self, group_id: int) -> GroupRecord:
        with self.store.read() as conn:
            return _group(
                conn.execute(select(t.alert_groups).where(t.alert_groups.c.id == group_id)).one()
            )

    def claim_notification(
        self, conn: Connection, group: GroupRecord, state: dict[str, str], at: datetime
    ) -> bool:
        """Record what the group was told at ``at``, unless another dispatcher notified it
        since ``group`` was read (compare-and-set); False when that happened."""
        g = t.alert_groups
        same = (
            g.c.last_notified_at.is_(None)
            if group.last_notified_at is None
            else g.c.last_notified_at == group.last_notified_at
        )
        done = conn.execute(
            update(g)
            .where(g.c.id == group.id, same)
            .values(last_notified_at=at, notified_state=_json(state))
        )
        return bool(done.rowcount)

    def set_thread(self, group_id: int, thread: dict[str, Any]) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(t.alert_groups)
                .where(t.alert_groups.c.id == group_id)
                .values(thread=_json(thread))
            )

    # --- policies made through the API ---------------------------------------
    def create_policy(self, spec: PolicySpec, actor: str) -> None:
        with self.store.write() as conn:
            if conn.execute(select(t.policies.c.id).where(t.policies.c.name == spec.name)).first():
                raise ConflictError(f"a policy named {spec.name!r} already exists")
            conn.execute(
                t.policies.insert().values(
                    name=spec.name,
                    spec=_json(spec.model_dump(mode="json", by_alias=True)),
                    source="api",
                    updated_at=utcnow(),
                    updated_by=actor,
                )
            )
            audit.record(
                conn,
                actor,
                "policy.created",
                model=None if spec.model == "*" else spec.model,
                subject=spec.name,
                details=spec.model_dump(mode="json", by_alias=True),
            )

    def policies(self) -> list[PolicySpec]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.policies.c.spec).order_by(t.policies.c.id))
            return [PolicySpec.model_validate(orjson.loads(r.spec)) for r in rows]
