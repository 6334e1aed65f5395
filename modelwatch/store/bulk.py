"""Batched writes at each store's raw speed: SQLite multi-row INSERT, PostgreSQL binary COPY."""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

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
    """Multi-row ``INSERT ... VALUES (...), (...)`` statements.

    ``executemany`` steps once per row, and the sqlite3 module releases the GIL
    around every step (and every statement preparation). While other threads run
    Python (the server parsing and validating the next batches) each re-acquisition
    can wait for the GIL switch interval: with a busy thread, ``bench/sqlite_insert.py``
    measured 2.5 to 130 s for 100k events in 1,000-row batches with ``executemany``
    (0.4 s alone), and 1.3 to 5.7 s with these statements. They hold 256 rows, then a
    power of two each for the rest, so a connection's statement cache keeps only a
    few of them (a cached statement takes about 2.5 KB per row).
    """
    raw = conn.connection.driver_connection
    variables = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    most = _floor_pow2(max(1, min(_SQLITE_ROWS_PER_STATEMENT, variables // len(columns))))
    verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
    cursor = raw.cursor()  # type: ignore[union-attr]
    inserted, start = 0, 0
    try:
        while start < len(rows):
            size = min(most, _floor_pow2(len(rows) - start))
            values = list(chain.from_iterable(rows[start : start + size]))
            cursor.execute(_sqlite_sql(verb, table.name, tuple(columns), size), values)
            inserted += cursor.rowcount
            start += size
        return inserted
    finally:
        cursor.close()


_SQLITE_ROWS_PER_STATEMENT = 256


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1)


@functools.lru_cache(maxsize=128)
def _sqlite_sql(verb: str, table: str, columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join("?" for _ in columns) + ")"
    return f'{verb} INTO "{table}" ({", ".join(columns)}) VALUES ' + ", ".join([one] * rows)


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
    import psycopg  # loaded only on PostgreSQL: SQLite processes start without it

    raw = conn.connection.driver_connection
    collist = ", ".join(columns)
    types = [_pg_type(table, c) for c in columns]
    key = _lock_order_key(table, columns)
    if key:
        # Concurrent batches with keys in common then take their index locks in the same
        # order and wait for each other instead of deadlocking.
        rows = _in_key_order(rows, [list(columns).index(c) for c in key])
    if ignore_conflicts:
        # A batch rarely holds a known key (mostly client retries), so COPY straight into
        # the table (half the time of staging + INSERT ... ON CONFLICT per batch) and
        # only when the unique key refuses it, undo that and take the staging path.
        try:
            with conn.begin_nested():
                _copy(raw, table.name, collist, types, rows)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
    with raw.cursor() as cur:  # type: ignore[union-attr]
        if not ignore_conflicts:
            _copy(raw, table.name, collist, types, rows)
            return len(rows)
        # One staging table per connection and column set, reused across batches.
        digest = hashlib.sha1(collist.encode()).hexdigest()[:8]
        target = f"_mw_stage_{table.name}_{digest}"
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{target}" ON COMMIT DELETE ROWS '
            f'AS SELECT {collist} FROM "{table.name}" WITH NO DATA'
        )
        _copy(raw, target, collist, types, rows)
        order = f"ORDER BY {', '.join(key)} " if key else ""
        cur.execute(
            f'INSERT INTO "{table.name}" ({collist}) SELECT {collist} FROM "{target}" '
            f"{order}ON CONFLICT DO NOTHING"
        )
        inserted = cur.rowcount
        cur.execute(f'TRUNCATE "{target}"')
        return int(inserted)


def _in_key_order(rows: Sequence[tuple[Any, ...]], positions: list[int]) -> list[tuple[Any, ...]]:
    """``rows`` sorted by the values at ``positions``."""
    try:
        # Key columns are nearly always NOT NULL: plain values compare in C.
        return sorted(rows, key=itemgetter(*positions))
    except TypeError:
        # (is None, value): nulls, never equal in a unique key, sort last uncompared.
        return sorted(rows, key=lambda row: [(row[i] is None, row[i]) for i in positions])


def _lock_order_key(table: Table, columns: Sequence[str]) -> tuple[str, ...]:
    """The unique key rows are written in: the primary key if ``columns`` hold it, else
    the first by name of the unique constraints and indexes they hold (by name, so that
    every process picks the same one); empty if there is none."""
    given = set(columns)
    primary = tuple(c.name for c in table.primary_key.columns)
    if primary and set(primary) <= given:
        return primary
    candidates = [
        (str(c.name), tuple(col.name for col in c.columns))
        for c in table.constraints
        if isinstance(c, UniqueConstraint)
    ]
    candidates += [
        (str(ix.name), tuple(col.name for col in ix.columns)) for ix in table.indexes if ix.unique
    ]
    for _, key in sorted(candidates):
        if key and set(key) <= given:
            return key
    return ()


def _copy(
    raw: Any, target: str, collist: str, types: list[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    with (
        raw.cursor() as cur,
        cur.copy(f'COPY "{target}" ({collist}) FROM STDIN (FORMAT BINARY)') as copy,
    ):
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
