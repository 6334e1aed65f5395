"""Reference (baseline) datasets: stored rows per version, newest upload active."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Select, func, select

from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord, VersionRecord
from modelwatch.timeutil import utcnow

__all__ = ["ReferenceStore", "StoredReference"]

_CHUNK = 50_000


@dataclass(frozen=True)
class StoredReference:
    dataset_id: int
    rows: int
    sha256: str


class ReferenceStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def save(
        self,
        model: ModelRecord,
        version: VersionRecord,
        frame: pl.DataFrame,
        fmt: str,
        digest: str,
        actor: str,
    ) -> StoredReference:
        """Store ``frame`` (columns already in ``layout.reference_value_columns`` order)."""
        layout = model.layout
        columns = ["dataset_id", *(c.name for c in layout.reference_value_columns)]
        with self.store.write() as conn:
            dataset_id = int(
                conn.execute(
                    t.reference_datasets.insert().values(
                        version_id=version.id,
                        rows=frame.height,
                        format=fmt,
                        sha256=digest,
                        uploaded_at=utcnow(),
                        uploaded_by=actor,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            for rows in _chunks(frame, dataset_id):
                insert_rows(conn, layout.reference, columns, rows)
            audit.record(
                conn,
                actor,
                "reference.uploaded",
                model=model.name,
                version=version.version,
                details={"rows": frame.height, "format": fmt, "sha256": digest},
            )
        return StoredReference(dataset_id, frame.height, digest)

    def latest_by_version(self, model: ModelRecord) -> dict[int, dict[str, Any]]:
        """The active (newest) reference upload of each of ``model``'s versions, by version id."""
        mv = t.model_versions
        return self._latest(select(mv.c.id).where(mv.c.model_id == model.id))

    def latest_for_versions(self, version_ids: Iterable[int] | None) -> dict[int, dict[str, Any]]:
        """The active (newest) reference upload of each version, by version id; ``None``: of
        every version (of every model)."""
        return self._latest(None if version_ids is None else list(version_ids))

    def _latest(self, versions: Select[Any] | list[int] | None) -> dict[int, dict[str, Any]]:
        """The newest upload per version, of the versions ``versions`` lists or selects."""
        rd = t.reference_datasets
        newest = select(func.max(rd.c.id)).group_by(rd.c.version_id)
        if versions is not None:
            newest = newest.where(rd.c.version_id.in_(versions))
        with self.store.read() as conn:
            rows = conn.execute(select(rd).where(rd.c.id.in_(newest))).all()
        return {
            r.version_id: {
                "dataset_id": r.id,
                "rows": r.rows,
                "format": r.format,
                "sha256": r.sha256,
                "uploaded_at": r.uploaded_at,
                "uploaded_by": r.uploaded_by,
            }
            for r in rows
        }


def _chunks(frame: pl.DataFrame, dataset_id: int) -> Iterable[list[tuple[Any, ...]]]:
    for start in range(0, frame.height, _CHUNK):
        part = frame.slice(start, _CHUNK)
        yield [(dataset_id, *row) for row in part.iter_rows()]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
