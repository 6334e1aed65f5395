"""Read-back: one version window of N events into polars, per store, layout and reader.

Layouts: ``typed`` is modelwatch's per-model table (one column per feature);
``json`` is the alternative of one JSON text column holding the features,
built here only. Readers: ADBC, connectorx (one connection, and split in two
partitions on ``id`` for the two cores), and ``pl.read_database`` over a
SQLAlchemy connection. A JSON read includes decoding the features into typed
columns with polars, so both layouts end as the same frame.

    .venv/bin/python -m bench.readback [--events 1000000] [--repeat 3] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
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
    feature_frame,
    machine,
    make_model,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
    storage_rows,
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
    with store.write() as conn:
        conn.exec_driver_sql("ANALYZE")
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
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "2147483647"})
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
        "connectorx, 2 partitions": connectorx_2,
        "pl.read_database (SQLAlchemy)": read_database,
    }


def arrow_frame(table: Any) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def decode_json(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("features").str.json_decode(FEATURE_DTYPE)).unnest(
        "features"
    )


def measure(kind: str, store: Store, n: int, repeat: int) -> list[list[object]]:
    model, version_id = load(store, n)
    layout = model.layout
    end_us = START_US + n * 1000
    where = f"WHERE version_id = {version_id} AND ts_us >= {START_US} AND ts_us < {end_us}"
    keys = "id, version_id, request_id, ts_us, prediction"
    typed_sql = (
        f"SELECT {keys}, score, {', '.join(c.name for c in layout.features)} "
        f'FROM "{layout.events.name}" {where}'
    )
    json_sql = f"SELECT {keys}, score, features FROM {JSON_TABLE} {where}"
    size = sizes(store, model)
    rows: list[list[object]] = []

    def row(layout_name: str, reader: str, seconds: float, frame: pl.DataFrame) -> None:
        assert frame.height == n, (layout_name, reader, frame.height)
        rows.append([kind, layout_name, reader, f"{seconds:.2f}", f"{n / seconds / 1000:,.0f}k"])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)

    for name, read in readers(store).items():
        seconds, frame = best_of(repeat, lambda read=read: read(typed_sql))
        row("typed", name, seconds, frame)
        seconds, frame = best_of(repeat, lambda read=read: decode_json(read(json_sql)))
        row("json", f"{name} + json_decode", seconds, frame)
    seconds, frame = best_of(
        repeat, lambda: read_events(store, model, [version_id], START_US, end_us)
    )
    row("typed", "frames.read_events (ADBC, typed, sorted)", seconds, frame)
    seconds, frame = best_of(
        repeat,
        lambda: read_events(store, model, [version_id], START_US, end_us, with_labels=True),
    )
    row("typed", "frames.read_events, with_labels (half labelled)", seconds, frame)
    mib = {k: v / 2**20 for k, v in size.items()}
    print(f"{kind} size: typed {mib[layout.events.name]:.0f} MiB, json {mib[JSON_TABLE]:.0f} MiB")
    rows.append([kind, "size (table + indexes)", f"typed {mib[layout.events.name]:.0f} MiB", "",
                 f"json {mib[JSON_TABLE]:.0f} MiB"])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many")
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"read-back of {args.events:,} events, best of {args.repeat}; {machine()}")
    rows: list[list[object]] = []
    for kind in args.stores.split(","):
        context = sqlite_url() if kind == "sqlite" else pg_url()
        with context as url:
            store = open_store(url)
            try:
                rows += measure(kind, store, args.events, args.repeat)
            finally:
                store.dispose()
    print()
    print(markdown_table(["store", "layout", "reader", "seconds", "events/s"], rows))


if __name__ == "__main__":
    main()
