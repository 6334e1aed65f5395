"""Claiming work through the database, so that each item is taken by one worker.

``UPDATE t SET ... WHERE id = (SELECT id ... LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *`` on PostgreSQL: concurrent workers skip rows another has locked.
SQLite has a single writer, so the same statement without the lock clause is
already exclusive.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Select, Table, update

from modelwatch.store.engine import Store

__all__ = ["claim_in", "claim_one"]


def claim_one(store: Store, table: Table, pick: Select[Any], **values: Any) -> Row[Any] | None:
    """Set ``values`` on the row ``pick`` selects (its id, one row) and return it, or None."""
    with store.write() as conn:
        return claim_in(conn, store, table, pick, **values)


def claim_in(
    conn: Connection, store: Store, table: Table, pick: Select[Any], **values: Any
) -> Row[Any] | None:
    """:func:`claim_one` inside the caller's write transaction ``conn``."""
    if store.is_postgres:
        pick = pick.with_for_update(of=table, skip_locked=True)
    stmt = (
        update(table)
        .where(table.c.id == pick.limit(1).scalar_subquery())
        .values(**values)
        .returning(*table.c)
    )
    return conn.execute(stmt).first()
