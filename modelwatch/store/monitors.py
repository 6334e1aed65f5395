"""Monitors in the store: declared in the config or created through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from modelwatch.errors import ConflictError, NotFoundError
from modelwatch.monitors import MonitorSpec
from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.paging import keyset
from modelwatch.store.registry import Registry
from modelwatch.timeutil import utcnow

__all__ = ["MonitorRecord", "MonitorStore"]


@dataclass(frozen=True)
class MonitorRecord:
    id: int
    model_id: int
    spec: MonitorSpec
    source: str
    updated_at: datetime
    updated_by: str

    @property
    def name(self) -> str:
        return self.spec.name


def _record(row: Row[Any]) -> MonitorRecord:
    spec = MonitorSpec.model_validate(orjson.loads(row.spec))
    return MonitorRecord(row.id, row.model_id, spec, row.source, row.updated_at, row.updated_by)


def _dump(spec: MonitorSpec) -> str:
    return orjson.dumps(spec.model_dump(mode="json")).decode()


def _audit(conn: Connection, actor: str, action: str, spec: MonitorSpec) -> None:
    details = spec.model_dump(mode="json", by_alias=True)
    audit.record(conn, actor, action, model=spec.model, subject=spec.name, details=details)


class MonitorStore:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    def create(self, spec: MonitorSpec, actor: str, source: str = "api") -> MonitorRecord:
        try:
            return self._create(spec, actor, source)
        except IntegrityError as exc:  # another process made it at the same moment
            raise ConflictError(f"a monitor named {spec.name!r} already exists") from exc

    def upsert(self, spec: MonitorSpec, actor: str, source: str) -> MonitorRecord:
        """Create or replace (config-declared monitors are re-applied at every start)."""
        try:
            return self._upsert(spec, actor, source)
        except ConflictError:  # lost a race to create it: apply over the winner's
            return self._upsert(spec, actor, source)

    def _create(self, spec: MonitorSpec, actor: str, source: str) -> MonitorRecord:
        model = self.registry.get_model(spec.model)
        now = utcnow()
        with self.store.write() as conn:
            if conn.execute(select(t.monitors.c.id).where(t.monitors.c.name == spec.name)).first():
                raise ConflictError(f"a monitor named {spec.name!r} already exists")
            conn.execute(
                t.monitors.insert().values(
                    name=spec.name,
                    model_id=model.id,
                    spec=_dump(spec),
                    source=source,
                    created_at=now,
                    updated_at=now,
                    updated_by=actor,
                )
            )
            _audit(conn, actor, "monitor.created", spec)
        return self.get_by_name(spec.name)

    def _upsert(self, spec: MonitorSpec, actor: str, source: str) -> MonitorRecord:
        try:
            existing = self.get_by_name(spec.name)
        except NotFoundError:
            return self.create(spec, actor, source)
        if existing.spec == spec:
            return existing
        model = self.registry.get_model(spec.model)
        with self.store.write() as conn:
            conn.execute(
                update(t.monitors)
                .where(t.monitors.c.id == existing.id)
                .values(
                    spec=_dump(spec),
                    model_id=model.id,
                    source=source,
                    updated_at=utcnow(),
                    updated_by=actor,
                )
            )
            _audit(conn, actor, "monitor.updated", spec)
        return self.get(existing.id)

    def get(self, monitor_id: int) -> MonitorRecord:
        with self.store.read() as conn:
            row = conn.execute(select(t.monitors).where(t.monitors.c.id == monitor_id)).first()
        if row is None:
            raise NotFoundError(f"no monitor with id {monitor_id}")
        return _record(row)

    def get_by_name(self, name: str) -> MonitorRecord:
        with self.store.read() as conn:
            row = conn.execute(select(t.monitors).where(t.monitors.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no monitor named {name!r}")
        return _record(row)

    def list(
        self, model_id: int | None = None, after: int | None = None, limit: int | None = None
    ) -> list[MonitorRecord]:
        """Monitors by id; ``after``/``limit`` give a page."""
        query = keyset(select(t.monitors), t.monitors.c.id, after, limit)
        if model_id is not None:
            query = query.where(t.monitors.c.model_id == model_id)
        with self.store.read() as conn:
            return [_record(r) for r in conn.execute(query)]
