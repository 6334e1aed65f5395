"""Per-model retention settings in the store: set by the config or through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.timeutil import utcnow

__all__ = ["RetentionSetting", "RetentionSettings"]


@dataclass(frozen=True)
class RetentionSetting:
    """A model's own retention; ``None`` fields take the deployment's default."""

    model_id: int
    raw_s: int | None
    results_s: int | None
    source: str
    updated_at: datetime
    updated_by: str


class RetentionSettings:
    def __init__(self, store: Store) -> None:
        self.store = store

    def all(self) -> dict[int, RetentionSetting]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.retention_settings)).all()
        return {
            r.model_id: RetentionSetting(
                r.model_id, r.raw_s, r.results_s, r.source, r.updated_at, r.updated_by
            )
            for r in rows
        }

    def get(self, model_id: int) -> RetentionSetting | None:
        return self.all().get(model_id)

    def put(
        self,
        model_id: int,
        model: str,
        raw_s: int | None,
        results_s: int | None,
        *,
        actor: str,
        source: str,
    ) -> RetentionSetting:
        """Replace the model's setting (an audit record says who, and from where)."""
        now = utcnow()
        values = {
            "raw_s": raw_s,
            "results_s": results_s,
            "source": source,
            "updated_at": now,
            "updated_by": actor,
        }
        with self.store.write() as conn:
            current = conn.execute(
                select(t.retention_settings).where(t.retention_settings.c.model_id == model_id)
            ).first()
            unchanged = current is not None and (
                current.raw_s,
                current.results_s,
                current.source,
            ) == (raw_s, results_s, source)
            if current is None:
                conn.execute(t.retention_settings.insert().values(model_id=model_id, **values))
            elif not unchanged:
                conn.execute(
                    t.retention_settings.update()
                    .where(t.retention_settings.c.model_id == model_id)
                    .values(**values)
                )
            if not unchanged:
                details = {"raw_s": raw_s, "results_s": results_s, "source": source}
                audit.record(conn, actor, "retention.set", model=model, details=details)
        return self.get(model_id) or RetentionSetting(
            model_id, raw_s, results_s, source, now, actor
        )

    def clear(self, model_id: int, model: str, *, actor: str) -> None:
        with self.store.write() as conn:
            gone = conn.execute(
                delete(t.retention_settings).where(t.retention_settings.c.model_id == model_id)
            ).rowcount
            if gone:
                audit.record(conn, actor, "retention.clear", model=model)
