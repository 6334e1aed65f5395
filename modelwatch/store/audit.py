"""The audit log: an append-only record of every change of state, with actor and time.

Writers call :func:`record` inside the transaction that makes the change, so a
change and its audit record commit together or not at all. Actors are API key
names, ``config`` for changes the config file makes, or ``system``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.paging import keyset
from modelwatch.timeutil import utcnow

__all__ = ["MODEL_PROMOTED", "SYSTEM", "AuditLog", "AuditRecord", "record"]

SYSTEM = "system"
MODEL_PROMOTED = "model.promoted"


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: str | None
    subject: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "subject": self.subject,
            "details": self.details,
        }


def record(
    conn: Connection,
    actor: str,
    action: str,
    *,
    model: str | None = None,
    version: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one audit record in the caller's transaction."""
    conn.execute(
        t.audit_log.insert().values(
            at=at or utcnow(),
            actor=actor,
            action=action,
            model=model,
            version=version,
            subject=subject,
            details=orjson.dumps(details or {}, default=str).decode(),
        )
    )


def _record(row: Row[Any]) -> AuditRecord:
    m = row._mapping
    return AuditRecord(
        m["id"],
        m["at"],
        m["actor"],
        m["action"],
        m["model"],
        m["version"],
        m["subject"],
        orjson.loads(m["details"]),
    )


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def query(
        self,
        *,
        action: str | None = None,
        model: str | None = None,
        version: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first, older than ``before_id``. ``action`` matches exactly, or as a
        prefix when it ends in ``.`` or ``*`` (``retrain.`` is every retrain record)."""
        a = t.audit_log
        query = keyset(select(a), a.c.id, before_id, limit, newest_first=True)
        if action:
            prefix = action.rstrip("*")
            exact = prefix == action and not action.endswith(".")
            query = query.where(
                a.c.action == action if exact else a.c.action.startswith(prefix, autoescape=True)
            )
        for column, value in ((a.c.model, model), (a.c.version, version), (a.c.actor, actor)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(a.c.at >= since)
        if until is not None:
            query = query.where(a.c.at < until)
        with self.store.read() as conn:
            return [_record(r) for r in conn.execute(query)]
