"""Concurrent PostgreSQL batches with keys in common wait for each other, never deadlock."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint

from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store


@pytest.mark.postgres
def test_batches_sharing_keys_in_any_order_do_not_deadlock(pg_url: str) -> None:
    store = Store(pg_url)
    table = Table(
        "bulk_order",
        MetaData(),
        Column("request_id", String(20), nullable=False),
        Column("version_id", Integer, nullable=False),
        UniqueConstraint("request_id", "version_id"),
    )
    table.create(store.engine)
    columns = ["request_id", "version_id"]
    outcome: dict[str, object] = {}
    second_started = threading.Event()

    def second() -> None:
        try:
            with store.write() as conn:
                second_started.set()
                # Given as (b, a): unsorted, it would hold b and wait for a.
                rows = [("b", 1), ("a", 1)]
                outcome["second"] = insert_rows(conn, table, columns, rows, ignore_conflicts=True)
        except Exception as exc:  # the deadlock shows up in one of the two transactions
            outcome["second"] = exc

    try:
        with store.write() as conn:
            insert_rows(conn, table, columns, [("a", 1)], ignore_conflicts=True)
            thread = threading.Thread(target=second)
            thread.start()
            second_started.wait(10)
            thread.join(1.0)  # the second batch is now waiting for "a"
            insert_rows(conn, table, columns, [("b", 1)], ignore_conflicts=True)
        thread.join(30)
        assert outcome["second"] == 0, outcome  # both keys were already stored
        with store.read() as conn:
            stored = conn.execute(table.select().order_by(table.c.request_id)).all()
        assert [tuple(r) for r in stored] == [("a", 1), ("b", 1)]
    finally:
        table.drop(store.engine)
        store.dispose()


@pytest.mark.postgres
def test_a_nullable_unique_key_with_nulls_is_written_whole(pg_url: str) -> None:
    """Nulls in a unique key cannot be compared with values; they are ordered last."""
    store = Store(pg_url)
    table = Table(
        "bulk_order_nulls",
        MetaData(),
        Column("version_id", Integer, nullable=False),
        Column("sample_id", String(20), nullable=True),
        UniqueConstraint("version_id", "sample_id"),
    )
    table.create(store.engine)
    columns = ["version_id", "sample_id"]
    rows = [(1, "b"), (1, None), (1, "a"), (1, None)]
    try:
        with store.write() as conn:
            assert insert_rows(conn, table, columns, rows, ignore_conflicts=True) == 4
        with store.write() as conn:  # the staging path: one known key, one new, one null
            fresh = [(1, None), (1, "a"), (1, "c")]
            assert insert_rows(conn, table, columns, fresh, ignore_conflicts=True) == 2
        with store.read() as conn:
            stored = conn.execute(table.select()).all()
        assert sorted(str(r.sample_id) for r in stored) == ["None"] * 3 + ["a", "b", "c"]
    finally:
        table.drop(store.engine)
        store.dispose()
