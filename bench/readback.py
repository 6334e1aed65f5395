"""Read-back: one version window of N events into polars, per store, layout and reader.

Layouts: ``typed`` is modelwatch's per-model table (one column per feature);
``json`` is the alternative of one JSON text column holding the features,
built here only. Readers: ADBC (one connection, and two for the two halves of
the window), connectorx (one connection, and two partitions on ``id``),
``pl.read_database`` over a SQLAlchemy connection, and
``modelwatch.store.frames.read_events`` itself. A JSON read includes decoding the
features into typed columns (polars ``json_decode``, or in SQL), so every row
ends as the same frame.

ADBC and connectorx bundle their own SQLite; here they read SQLite in this
process only while it holds no sqlite3 connection (see modelwatch.store.frames
for why the service reads through reader processes instead).

    .venv/bin/python -m bench.readback [--events 1000000] [--repeat 3] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import adbc_driver_postgresql.dbapi as adbc_pg
import adbc_driver_sqlite.dbapi as adbc_sqlite
import connectorx as cx
import polars as pl
from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import make_url

from bench.common import (
    CATEGORICAL,
    NUMERIC,
    START_US,
    best_of,
    exit_cleanly_on_sigterm,
    feature_frame,
    machine,
    make_model,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
    storage_rows,
    wait_quiet,
)
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.frames import read_events
from modelwatch.store.registry import ModelRecord

JSON_TABLE = "bench_json_events"
CHUNK = 100_000
FEATURE_DTYPE = pl.Struct(
    {**{n: pl.Float64 for n in NUMERIC}, **{n: pl.String for n in CATEGORICAL}}
)
Reader = Callable[[str], pl.DataFrame]
Query = Callable[[int, int], str]


def json_table() -> Table:
    md = MetaData()
    return Table(
        JSON_TABLE,
        md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("version_id", Integer, nullable=False),
        Column("request_id", String(128), nullable=False),
        Column("ts_us", BigInteger, nullable=False),
        Column("received_us", BigInteger, nullable=False),
        Column("prediction", Text),
        Column("score", Float(precision=53)),
        Column("features", Text),
        Index("ix_bench_json_version_ts", "version_id", "ts_us"),
    )


def load(store: Store, n: int) -> tuple[ModelRecord, int]:
    """Write ``n`` events to the typed table and the JSON table, plus labels for half."""
    model, version = make_model(store)
    layout = model.layout
    jtable = json_table()
    with store.write() as conn:
        jtable.create(conn)
    for start in range(0, n, CHUNK):
        frame = feature_frame(min(CHUNK, n - start), seed=start)
        frame = frame.with_columns(pl.col("ts_us") + start * 1000)
        typed = storage_rows(frame, version.id, START_US)
        as_json = frame.select(
            pl.lit(version.id).alias("version_id"),
            "request_id",
            "ts_us",
            pl.lit(START_US).alias("received_us"),
            "prediction",
            "score",
            pl.struct(*NUMERIC, *CATEGORICAL).struct.json_encode().alias("features"),
        ).rows()
        labels = frame.select(
            "request_id", "prediction", "ts_us", pl.col("ts_us").alias("received_us")
        ).rows()[::2]
        with store.write() as conn:
            insert_rows(conn, layout.events, layout.event_columns, typed)
            insert_rows(conn, jtable, [c.name for c in jtable.c if c.name != "id"], as_json)
            insert_rows(
                conn, layout.labels, ["request_id", "label", "ts_us", "received_us"], labels
            )
    # Steady state for reading: statistics, hint bits and visibility map (PostgreSQL),
    # an empty WAL (SQLite).
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if store.is_sqlite:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return model, version.id


def sizes(store: Store, model: ModelRecord) -> dict[str, int]:
    """Bytes of each layout's table with its indexes."""
    events = model.layout.events.name
    with store.read() as conn:
        if store.is_sqlite:
            sql = (
                "SELECT SUM(pgsize) FROM dbstat WHERE name = :t "
                "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = :t)"
            )
            return {
                t: int(conn.exec_driver_sql(sql.replace(":t", f"'{t}'")).scalar_one())
                for t in (events, JSON_TABLE)
            }
        return {
            t: int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar_one())
            for t in (events, JSON_TABLE)
        }


def readers(store: Store) -> dict[str, Reader]:
    url = make_url(store.url)
    if store.is_sqlite:
        path = os.path.abspath(url.database or "")
        cx_uri = f"sqlite://{path}"

        def adbc(sql: str) -> pl.DataFrame:
            with adbc_sqlite.connect(path) as conn, conn.cursor() as cur:
                cur.execute("PRAGMA busy_timeout = 30000")
                cur.fetchall()
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "1000000000"})
                cur.execute(sql)
                return arrow_frame(cur.fetch_arrow_table())

    else:
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        cx_uri = libpq

        def adbc(sql: str) -> pl.DataFrame:
            with adbc_pg.connect(libpq) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return arrow_frame(cur.fetch_arrow_table())

    def connectorx(sql: str) -> pl.DataFrame:
        return arrow_frame(cx.read_sql(cx_uri, sql, return_type="arrow"))

    def connectorx_2(sql: str) -> pl.DataFrame:
        return arrow_frame(
            cx.read_sql(cx_uri, sql, return_type="arrow", partition_on="id", partition_num=2)
        )

    def read_database(sql: str) -> pl.DataFrame:
        with store.engine.connect() as conn:
            return pl.read_database(sql, conn)

    return {
        "ADBC": adbc,
        "connectorx": connectorx,
        "connectorx, 2 partitions on id": connectorx_2,
        "pl.read_database (SQLAlchemy)": read_database,
    }


def arrow_frame(table: Any) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def in_halves(read: Reader, query: Query, start: int, end: int) -> pl.DataFrame:
    """Two queries for the two halves of the window, on two connections at once."""
    mid = (start + end) // 2
    with ThreadPoolExecutor(2) as pool:
        return pl.concat(list(pool.map(read, [query(start, mid), query(mid, end)])))


def decode_json(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("features").str.json_decode(FEATURE_DTYPE)).unnest("features")


def queries(store: Store, model: ModelRecord, version_id: int) -> dict[str, Query]:
    """The window query of each layout, by its time bounds."""
    layout = model.layout
    keys = "e.id, e.version_id, e.request_id, e.ts_us, e.prediction, e.score"
    features = ", ".join(f"e.{c.name}" for c in layout.features)
    names = [*NUMERIC, *CATEGORICAL]
    if store.is_sqlite:
        extract = ", ".join(f"json_extract(e.features, '$.{n}') AS {n}" for n in names)
        source = f"{JSON_TABLE} e"
    else:
        types = [f"{n} float8" for n in NUMERIC] + [f"{n} text" for n in CATEGORICAL]
        extract = ", ".join(f"x.{n}" for n in names)
        source = f"{JSON_TABLE} e, json_to_record(e.features::json) AS x({', '.join(types)})"
    selects = {
        "typed": f'SELECT {keys}, {features} FROM "{layout.events.name}" e',
        "json": f"SELECT {keys}, e.features FROM {JSON_TABLE} e",
        "json_sql": f"SELECT {keys}, {extract} FROM {source}",
    }

    def query(select: str, a: int, b: int) -> str:
        return f"{select} WHERE e.version_id = {version_id} AND e.ts_us >= {a} AND e.ts_us < {b}"

    return {name: partial(query, select) for name, select in selects.items()}


Case = tuple[str, str, Callable[[], pl.DataFrame]]


def cases(store: Store, model: ModelRecord, version_id: int, n: int) -> list[Case]:
    start, end = START_US, START_US + n * 1000
    q = queries(store, model, version_id)
    read = readers(store)
    adbc = read["ADBC"]

    def whole(fn: Reader, layout: str) -> pl.DataFrame:
        frame = fn(q[layout](start, end))
        return decode_json(frame) if layout == "json" else frame

    def halves(layout: str) -> pl.DataFrame:
        frame = in_halves(adbc, q[layout], start, end)
        return decode_json(frame) if layout == "json" else frame

    production = "ADBC in 2 reader processes" if store.is_sqlite else "ADBC, 2 connections"

    def window(with_labels: bool) -> pl.DataFrame:
        return read_events(store, model, [version_id], start, end, with_labels=with_labels)

    out: list[Case] = [("typed", name, partial(whole, fn, "typed")) for name, fn in read.items()]
    out += [
        ("typed", "ADBC, 2 connections (time halves)", partial(halves, "typed")),
        ("typed", f"frames.read_events ({production}, conformed, sorted)", partial(window, False)),
        ("typed", "frames.read_events, with_labels (half labelled)", partial(window, True)),
    ]
    out += [
        ("json", f"{name} + json_decode", partial(whole, fn, "json")) for name, fn in read.items()
    ]
    out += [
        ("json", "ADBC, 2 connections + json_decode", partial(halves, "json")),
        ("json", "ADBC, extracted in SQL", partial(whole, adbc, "json_sql")),
        ("json", "ADBC, 2 connections, extracted in SQL", partial(halves, "json_sql")),
    ]
    return out


def measure(
    kind: str, store: Store, n: int, repeat: int, only: Sequence[str]
) -> list[list[object]]:
    model, version_id = load(store, n)
    mib = {k: f"{v / 2**20:,.0f} MiB" for k, v in sizes(store, model).items()}
    read_events(store, model, [version_id], START_US, START_US + 2)  # starts both SQLite readers
    rows: list[list[object]] = []
    for layout, reader, fn in cases(store, model, version_id, n):
        if only and not any(o in f"{layout} {reader}" for o in only):
            continue

        def isolated(fn: Callable[[], pl.DataFrame] = fn) -> pl.DataFrame:
            # ADBC and connectorx bring their own SQLite: no sqlite3 connection of this
            # process may have the database open meanwhile (see modelwatch.store.frames).
            store.engine.dispose()
            return fn()

        load_before = wait_quiet(max_wait=30)
        seconds, frame = best_of(repeat, isolated)
        assert frame.height == n, (layout, reader, frame.height)
        rate = f"{n / seconds / 1000:,.0f}k"
        rows.append([kind, layout, reader, f"{seconds:.2f}", rate, f"{load_before:.0%}"])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    rows.append([kind, "typed", "size: table + indexes", mib[model.layout.events.name], "", ""])
    rows.append([kind, "json", "size: table + indexes", mib[JSON_TABLE], "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--only", default="", help="comma-separated parts of case names")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    only = [o for o in args.only.split(",") if o]
    print(f"read-back of {args.events:,} events, best of {args.repeat}; {machine()}")
    rows: list[list[object]] = []
    for kind in args.stores.split(","):
        context = sqlite_url() if kind == "sqlite" else pg_url()
        with context as url:
            store = open_store(url)
            try:
                rows += measure(kind, store, args.events, args.repeat, only)
            finally:
                store.dispose()
    print()
    headers = ["store", "layout", "reader", "seconds", "events/s", "machine load before"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
