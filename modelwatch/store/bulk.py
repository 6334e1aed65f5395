"""Batched writes at each store's raw speed: SQLite executemany, PostgreSQL binary COPY."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Float, Integer, String, Table

__all__ = ["insert_rows"]


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    ignore_conflicts: bool = False,
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) in the open transaction.

    With ``ignore_conflicts`` rows that hit a unique key are skipped. Returns how
    many rows were inserted.
    """
    if not rows:
        return 0
    if conn.dialect.name == "sqlite":
        return _sqlite_insert(conn, table, columns, rows, ignore_conflicts)
    return _postgres_copy(conn, table, columns, rows, ignore_conflicts)


def _sqlite_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    ignore_conflicts: bool,
) -> int:
    verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
    marks = ", ".join("?" for _ in columns)
    sql = f'{verb} INTO "{table.name}" ({", ".join(columns)}) VALUES ({marks})'
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _pg_type(table: Table, column: str) -> str:
    """The PostgreSQL binary COPY type name of a column."""
    kind = table.c[column].type
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, String):
        return "text"
    raise TypeError(f"no COPY type for {table.name}.{column} ({kind!r})")


def _postgres_copy(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    ignore_conflicts: bool,
) -> int:
    raw = conn.connection.driver_connection
    collist = ", ".join(columns)
    types = [_pg_type(table, c) for c in columns]
    with raw.cursor() as cur:  # type: ignore[union-attr]
        target = table.name
        if ignore_conflicts:
            # One staging table per connection and column set, reused across batches.
            digest = hashlib.sha1(collist.encode()).hexdigest()[:8]
            target = f"_mw_stage_{table.name}_{digest}"
            cur.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS "{target}" ON COMMIT DELETE ROWS '
                f'AS SELECT {collist} FROM "{table.name}" WITH NO DATA'
            )
        with cur.copy(f'COPY "{target}" ({collist}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        if not ignore_conflicts:
            return len(rows)
        cur.execute(
            f'INSERT INTO "{table.name}" ({collist}) SELECT {collist} FROM "{target}" '
            "ON CONFLICT DO NOTHING"
        )
        inserted = cur.rowcount
        cur.execute(f'TRUNCATE "{target}"')
        return int(inserted)
