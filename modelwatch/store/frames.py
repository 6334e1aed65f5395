"""Columnar reads: a window of events, or a reference dataset, as a polars frame.

Rows come straight from the per-model tables into Arrow through ADBC (the
fastest reader measured, see ``bench/RESULTS.md``), then are conformed to the
schema in one vectorised step: storage names (``f_0``, ``g_0``) become the
names users know, ``ts_us`` becomes ``timestamp`` as ``Datetime("us", "UTC")``,
and every column gets its declared dtype, so empty windows and all-null
columns have the same schema as full ones.

Frame column names are the user's names. A user name that would collide with
an earlier column (the fixed ``version_id``, ``request_id``, ``timestamp``,
``label``, ``label_timestamp``; then prediction, scores, features, segments,
target in that order) is prefixed with its role, e.g. ``segment:country`` when
``country`` is also a feature. ``:`` never occurs in a user name, so prefixed
names cannot collide. :func:`frame_columns` says which column is which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import polars as pl
from sqlalchemy.engine import make_url

from modelwatch.errors import StoreError
from modelwatch.store.engine import Store
from modelwatch.store.layout import ColumnKind, ModelLayout, StorageColumn
from modelwatch.store.registry import ModelRecord

__all__ = ["FrameColumns", "frame_columns", "read_events", "read_reference"]

UTC_US = pl.Datetime("us", "UTC")
_RESERVED = ("version_id", "request_id", "timestamp", "label", "label_timestamp")
_DTYPES: dict[ColumnKind, pl.DataType] = {
    ColumnKind.FLOAT: pl.Float64(),
    ColumnKind.TEXT: pl.String(),
    ColumnKind.BOOL: pl.Boolean(),
}
# ADBC's SQLite driver infers each column's type from the first batch it reads;
# one batch for the whole result lets it see every value (and promote ints to
# floats) instead of failing on a column that starts with NULLs.
_SQLITE_ONE_BATCH = {"adbc.sqlite.query.batch_rows": str(2**31 - 1)}


@dataclass(frozen=True)
class FrameColumns:
    """The frame column name of each role, for events and reference frames alike."""

    prediction: str
    scores: tuple[str, ...]
    features: tuple[str, ...]
    segments: tuple[str, ...]
    target: str
    by_storage: dict[str, str]


def frame_columns(layout: ModelLayout) -> FrameColumns:
    taken = set(_RESERVED)
    names: dict[str, str] = {}

    def claim(role: str, col: StorageColumn) -> str:
        name = col.source if col.source not in taken else f"{role}:{col.source}"
        taken.add(name)
        names[col.name] = name
        return name

    prediction = claim("prediction", layout.prediction)
    scores = tuple(claim("score", c) for c in layout.scores)
    features = tuple(claim("feature", c) for c in layout.features)
    segments = tuple(claim("segment", c) for c in layout.segments)
    target = claim("target", layout.reference_value_columns[-1])
    return FrameColumns(prediction, scores, features, segments, target, names)


def read_events(
    store: Store,
    model: ModelRecord,
    version_ids: Sequence[int],
    start_us: int,
    end_us: int,
    *,
    with_labels: bool = False,
) -> pl.DataFrame:
    """Events of ``version_ids`` with ``start_us <= ts_us < end_us``, ordered by version,
    timestamp and request id. ``with_labels`` adds ``label`` and ``label_timestamp``
    (null where no label has arrived yet)."""
    layout = model.layout
    names = frame_columns(layout)
    events, labels = layout.events.name, layout.labels.name
    ids = ", ".join(str(int(v)) for v in version_ids) or "NULL"
    select = ["e.version_id", "e.request_id", "e.ts_us"]
    select += [f"e.{c.name}" for c in layout.event_value_columns]
    join = ""
    if with_labels:
        select += ["l.label", "l.ts_us AS label_ts_us"]
        join = f' LEFT JOIN "{labels}" l ON l.request_id = e.request_id'
    sql = (
        f'SELECT {", ".join(select)} FROM "{events}" e{join} '
        f"WHERE e.version_id IN ({ids}) AND e.ts_us >= {int(start_us)} AND e.ts_us < {int(end_us)}"
    )
    exprs = [
        pl.col("version_id").cast(pl.Int64),
        pl.col("request_id").cast(pl.String),
        pl.col("ts_us").cast(pl.Int64).cast(UTC_US).alias("timestamp"),
        *_typed(layout.event_value_columns, names),
    ]
    if with_labels:
        exprs += [
            pl.col("label").cast(_DTYPES[layout.label_kind]),
            pl.col("label_ts_us").cast(pl.Int64).cast(UTC_US).alias("label_timestamp"),
        ]
    frame = fetch(store, sql).select(exprs)
    # Sorting here (multi-threaded) is cheaper than ORDER BY in either database.
    return frame.sort("version_id", "timestamp", "request_id")


def read_reference(store: Store, model: ModelRecord, dataset_id: int) -> pl.DataFrame:
    """The rows of reference dataset ``dataset_id``, in upload order."""
    layout = model.layout
    columns = layout.reference_value_columns
    sql = (
        f'SELECT {", ".join(c.name for c in columns)} FROM "{layout.reference.name}" '
        f"WHERE dataset_id = {int(dataset_id)} ORDER BY id"
    )
    return fetch(store, sql).select(_typed(columns, frame_columns(layout)))


def _typed(columns: Sequence[StorageColumn], names: FrameColumns) -> list[pl.Expr]:
    return [pl.col(c.name).cast(_DTYPES[c.kind]).alias(names.by_storage[c.name]) for c in columns]


def fetch(store: Store, sql: str) -> pl.DataFrame:
    """Run a read-only query through ADBC and return its rows as a frame (types as read)."""
    url = make_url(store.url)
    try:
        if store.is_postgres:
            return _adbc_postgres(url.set(drivername="postgresql"), sql)
        if url.database and url.database != ":memory:":
            return _adbc_sqlite(url.database, sql)
    except Exception as exc:  # ADBC raises its own DB-API hierarchy per driver
        raise StoreError(f"reading from the store failed: {exc}") from exc
    # An in-memory SQLite database is visible only through the engine's own connection.
    with store.read() as conn:
        return pl.read_database(sql, conn)


def _adbc_postgres(url: Any, sql: str) -> pl.DataFrame:
    import adbc_driver_postgresql.dbapi as adbc_pg

    uri = url.render_as_string(hide_password=False)
    with adbc_pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return _from_arrow(cur.fetch_arrow_table())


def _adbc_sqlite(path: str, sql: str) -> pl.DataFrame:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    # Read-only: a reader never creates a missing database or writes to one.
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    with adbc_sqlite.connect(uri) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**_SQLITE_ONE_BATCH)
        cur.execute(sql)
        return _from_arrow(cur.fetch_arrow_table())


def _from_arrow(table: Any) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
