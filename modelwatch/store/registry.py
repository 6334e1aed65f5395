"""The model registry: models, versions and aliases, and the per-model tables."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from modelwatch.domain import Alias, ModelSpec
from modelwatch.errors import ConflictError, NotFoundError
from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout
from modelwatch.store.paging import keyset
from modelwatch.timeutil import utcnow

__all__ = ["ModelRecord", "Registry", "VersionRecord"]


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    spec: ModelSpec
    created_at: datetime
    created_by: str

    @cached_property
    def layout(self) -> ModelLayout:
        # Building the per-model SQLAlchemy tables is not free; records are immutable.
        return ModelLayout(self.id, self.spec)


@dataclass(frozen=True)
class VersionRecord:
    id: int
    model_id: int
    version: str
    alias: str | None
    description: str
    created_at: datetime
    created_by: str


def _model_from_row(row: Row[Any]) -> ModelRecord:
    spec = ModelSpec.model_validate(orjson.loads(row.spec))
    return ModelRecord(row.id, row.name, spec, row.created_at, row.created_by)


def _version_from_row(r: Row[Any]) -> VersionRecord:
    return VersionRecord(
        r.id, r.model_id, r.version, r.alias, r.description, r.created_at, r.created_by
    )


class Registry:
    """Reads and writes the catalog. Models and versions are immutable once made,
    so lookups on the ingest path are cached (alias moves do not touch the cache)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._models: dict[str, ModelRecord] = {}
        self._versions: dict[tuple[int, str], VersionRecord] = {}
        self._lock = threading.Lock()

    # models -----------------------------------------------------------------
    def create_model(self, spec: ModelSpec, actor: str) -> ModelRecord:
        try:
            return self._create_model(spec, actor)
        except IntegrityError as exc:  # another process registered it at the same moment
            raise ConflictError(f"model {spec.name!r} already exists") from exc

    def _create_model(self, spec: ModelSpec, actor: str) -> ModelRecord:
        with self.store.write() as conn:
            if conn.execute(select(t.models.c.id).where(t.models.c.name == spec.name)).first():
                raise ConflictError(f"model {spec.name!r} already exists")
            now = utcnow()
            model_id = conn.execute(
                t.models.insert().values(
                    name=spec.name,
                    task=spec.task.value,
                    spec=orjson.dumps(spec.model_dump(mode="json")).decode(),
                    created_at=now,
                    created_by=actor,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            layout = ModelLayout(int(model_id), spec)
            for table in layout.tables:
                table.create(conn)
            audit.record(
                conn,
                actor,
                "model.registered",
                model=spec.name,
                details={"task": spec.task.value, "features": len(spec.features)},
                at=now,
            )
        return ModelRecord(int(model_id), spec.name, spec, now, actor)

    def ensure_model(self, spec: ModelSpec, actor: str) -> ModelRecord:
        """Create the model, or check that the stored one has the same schema."""
        try:
            existing = self.get_model(spec.name)
        except NotFoundError:
            try:
                return self.create_model(spec, actor)
            except ConflictError:
                existing = self.get_model(spec.name)
        if existing.spec != spec:
            raise ConflictError(
                f"model {spec.name!r} is already registered with a different schema; "
                "register the new schema under a new model name"
            )
        return existing

    def get_model(self, name: str) -> ModelRecord:
        cached = self._models.get(name)
        if cached is not None:
            return cached
        return self._read_model(t.models.c.name == name, f"unknown model {name!r}")

    def model_by_id(self, model_id: int) -> ModelRecord:
        cached = next((m for m in self._models.values() if m.id == model_id), None)
        if cached is not None:
            return cached
        return self._read_model(t.models.c.id == model_id, f"no model with id {model_id}")

    def _read_model(self, where: ColumnElement[bool], missing: str) -> ModelRecord:
        with self.store.read() as conn:
            row = conn.execute(select(t.models).where(where)).first()
        if row is None:
            raise NotFoundError(missing)
        record = _model_from_row(row)
        with self._lock:
            self._models[record.name] = record
        return record

    def list_models(self, after: str | None = None, limit: int | None = None) -> list[ModelRecord]:
        """Models by name; ``after``/``limit`` give a page (names are unique)."""
        query = keyset(select(t.models), t.models.c.name, after, limit)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
        return [_model_from_row(r) for r in rows]

    # versions ---------------------------------------------------------------
    def create_version(
        self,
        model: ModelRecord,
        version: str,
        alias: Alias | None,
        actor: str,
        description: str = "",
    ) -> VersionRecord:
        now = utcnow()
        try:
            with self.store.write() as conn:
                version_id = conn.execute(
                    t.model_versions.insert().values(
                        model_id=model.id,
                        version=version,
                        alias=None,
                        description=description,
                        created_at=now,
                        created_by=actor,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                audit.record(
                    conn,
                    actor,
                    "version.registered",
                    model=model.name,
                    version=version,
                    details={"alias": alias.value if alias else None, "description": description},
                    at=now,
                )
                if alias is not None:
                    self.move_alias(conn, model, alias, int(version_id), actor, now)
        except IntegrityError as exc:
            raise ConflictError(f"model {model.name!r} already has version {version!r}") from exc
        return self.get_version(model, version)

    def get_version(self, model: ModelRecord, version: str) -> VersionRecord:
        cached = self._versions.get((model.id, version))
        if cached is not None:
            return cached
        with self.store.read() as conn:
            row = conn.execute(
                select(t.model_versions).where(
                    t.model_versions.c.model_id == model.id, t.model_versions.c.version == version
                )
            ).first()
        if row is None:
            raise NotFoundError(
                f"model {model.name!r} has no version {version!r}; "
                f"register it with POST /v1/models/{model.name}/versions"
            )
        record = _version_from_row(row)
        with self._lock:
            self._versions[(model.id, version)] = record
        return record

    def version_by_id(self, version_id: int) -> VersionRecord:
        mv = t.model_versions
        with self.store.read() as conn:
            row = conn.execute(select(mv).where(mv.c.id == version_id)).first()
        if row is None:
            raise NotFoundError(f"no model version with id {version_id}")
        return _version_from_row(row)

    def list_versions(self, model: ModelRecord) -> list[VersionRecord]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.model_versions)
                .where(t.model_versions.c.model_id == model.id)
                .order_by(t.model_versions.c.id)
            ).all()
        return [_version_from_row(r) for r in rows]

    def set_alias(
        self, model: ModelRecord, alias: Alias, version: str, actor: str
    ) -> VersionRecord:
        target = self.get_version(model, version)
        with self.store.write() as conn:
            self.move_alias(conn, model, alias, target.id, actor, utcnow())
        return self.get_version(model, version)

    def move_alias(
        self,
        conn: Connection,
        model: ModelRecord,
        alias: Alias,
        version_id: int,
        actor: str,
        now: datetime,
    ) -> None:
        """Give ``alias`` to the version, in the caller's transaction, with its history
        row and audit record."""
        mv = t.model_versions
        model_id = model.id
        holder = conn.execute(
            select(mv.c.id).where(mv.c.model_id == model_id, mv.c.alias == alias.value)
        ).scalar_one_or_none()
        if holder == version_id:
            return
        self._forget_versions(model_id)
        if holder is not None:
            conn.execute(update(mv).where(mv.c.id == holder).values(alias=None))
        conn.execute(update(mv).where(mv.c.id == version_id).values(alias=alias.value))
        conn.execute(
            t.alias_changes.insert().values(
                model_id=model_id,
                alias=alias.value,
                from_version_id=holder,
                to_version_id=version_id,
                changed_at=now,
                changed_by=actor,
            )
        )
        rows = conn.execute(
            select(mv.c.id, mv.c.version).where(mv.c.id.in_([version_id, holder or -1]))
        )
        names: dict[int, str] = {int(r.id): str(r.version) for r in rows}
        audit.record(
            conn,
            actor,
            "alias.moved",
            model=model.name,
            version=names[version_id],
            subject=alias.value,
            details={"alias": alias.value, "from_version": names.get(holder or -1)},
            at=now,
        )

    def _forget_versions(self, model_id: int) -> None:
        """Drop cached versions of a model whose aliases change (their records hold the alias)."""
        with self._lock:
            for key in [k for k in self._versions if k[0] == model_id]:
                del self._versions[key]

    def alias_history(self, model: ModelRecord) -> list[dict[str, object]]:
        ac, mv = t.alias_changes, t.model_versions
        to_v = mv.alias("to_v")
        from_v = mv.alias("from_v")
        query = (
            select(
                ac.c.alias,
                from_v.c.version.label("from_version"),
                to_v.c.version.label("to_version"),
                ac.c.changed_at,
                ac.c.changed_by,
            )
            .join(to_v, to_v.c.id == ac.c.to_version_id)
            .outerjoin(from_v, from_v.c.id == ac.c.from_version_id)
            .where(ac.c.model_id == model.id)
            .order_by(ac.c.id)
        )
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
