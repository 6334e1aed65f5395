"""Where each MLflow-synced alias last agreed: the sync's memory of both sides."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.timeutil import now_us

__all__ = ["AgreedAliases"]


class AgreedAliases:
    def __init__(self, store: Store) -> None:
        self.store = store

    def of(self, model_id: int) -> dict[str, str]:
        """modelwatch alias -> the version both sides last gave it."""
        a = t.mlflow_aliases
        with self.store.read() as conn:
            rows = conn.execute(select(a.c.alias, a.c.version).where(a.c.model_id == model_id))
            return {alias: version for alias, version in rows}

    def agree(self, conn: Connection, model_id: int, alias: str, version: str) -> None:
        a = t.mlflow_aliases
        row = {"model_id": model_id, "alias": alias, "version": version, "synced_us": now_us()}
        statement = self.store.insert(a).values(**row)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[a.c.model_id, a.c.alias],
                set_={"version": version, "synced_us": row["synced_us"]},
            )
        )
