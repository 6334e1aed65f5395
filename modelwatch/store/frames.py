"""Columnar reads: a window of events, or a reference dataset, as a polars frame.

Rows come straight from the per-model tables into Arrow through ADBC, the
fastest reader measured (``bench/RESULTS.md``) - for SQLite in reader
processes, see below - then are conformed to the schema in one vectorised
step: storage names (``f_0``, ``g_0``) become the names users know, ``ts_us``
becomes ``timestamp`` as ``Datetime("us", "UTC")``, and every column gets its
declared dtype, so empty windows and all-null columns have the same schema as
full ones.

Frame column names are the user's names. A user name that would collide with
an earlier column (the fixed ``version_id``, ``request_id``, ``timestamp``,
``label``, ``label_timestamp``; then prediction, scores, features, segments,
target in that order) is prefixed with its role, e.g. ``segment:country`` when
``country`` is also a feature. ``:`` never occurs in a user name, so prefixed
names cannot collide. :func:`frame_columns` says which column is which.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import quote

import polars as pl
import pyarrow as pa
from sqlalchemy.engine import make_url

from modelwatch.errors import StoreError
from modelwatch.store.engine import Store
from modelwatch.store.layout import ColumnKind, ModelLayout, StorageColumn
from modelwatch.store.registry import ModelRecord

__all__ = [
    "KIND_DTYPES",
    "FrameColumns",
    "fetch",
    "fetch_many",
    "frame_columns",
    "read_events",
    "read_reference",
]

UTC_US = pl.Datetime("us", "UTC")
_RESERVED = ("version_id", "request_id", "timestamp", "label", "label_timestamp")
KIND_DTYPES: dict[ColumnKind, pl.DataType] = {
    ColumnKind.FLOAT: pl.Float64(),
    ColumnKind.TEXT: pl.String(),
    ColumnKind.BOOL: pl.Boolean(),
}
# ADBC's SQLite driver infers each column's type from the first batch it reads;
# one batch for the whole result lets it see every value (and promote ints to
# floats) instead of failing on a column that starts with NULLs.
_SQLITE_ONE_BATCH = {"adbc.sqlite.query.batch_rows": str(10**9)}
# Windows are read in two halves on two connections at once: about twice as fast
# on SQLite (two reader processes), a fifth faster on PostgreSQL (bench/RESULTS.md).
_PARTS = 2
_SQLITE_BUSY_MS = 30_000  # as the engine's connections wait for a lock


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
    (null where no label has arrived yet).

    The window is read as two halves in parallel; each half is a consistent
    snapshot.
    """
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
    head = f'SELECT {", ".join(select)} FROM "{events}" e{join} WHERE e.version_id IN ({ids})'
    exprs = [
        pl.col("version_id").cast(pl.Int64),
        pl.col("request_id").cast(pl.String),
        pl.col("ts_us").cast(pl.Int64).cast(UTC_US).alias("timestamp"),
        *_typed(layout.event_value_columns, names),
    ]
    if with_labels:
        exprs += [
            pl.col("label").cast(KIND_DTYPES[layout.label_kind]),
            pl.col("label_ts_us").cast(pl.Int64).cast(UTC_US).alias("label_timestamp"),
        ]
    in_memory = store.is_sqlite and _sqlite_file(store) is None
    parts = _split(int(start_us), int(end_us), 1 if in_memory else _PARTS)
    queries = [f"{head} AND e.ts_us >= {a} AND e.ts_us < {b}" for a, b in parts]
    frame = pl.concat([part.select(exprs) for part in fetch_many(store, queries)])
    archived = _archived(store, model, version_ids, start_us, end_us, with_labels)
    if archived is not None:
        # A day is in the hot tables and the archive between its archiving and its
        # deletion: the hot row wins (it is the same row).
        frame = pl.concat([frame, archived.select(exprs)], how="vertical_relaxed")
        frame = frame.unique(["version_id", "request_id"], keep="first", maintain_order=True)
    # Sorting here (multi-threaded) is cheaper than ORDER BY in either database.
    return frame.sort("version_id", "timestamp", "request_id")


def _archived(
    store: Store,
    model: ModelRecord,
    version_ids: Sequence[int],
    start_us: int,
    end_us: int,
    with_labels: bool,
) -> pl.DataFrame | None:
    """The archived part of a window, in the hot query's columns, or None."""
    if store.cold is None or not version_ids:
        return None
    frame = store.cold.read_events(model, version_ids, int(start_us), int(end_us))
    if frame is None or frame.is_empty():
        return None
    columns = ["version_id", "request_id", "ts_us"]
    columns += [c.name for c in model.layout.event_value_columns]
    if with_labels:
        columns += ["label", "label_ts_us"]
    return frame.select(columns)


def _split(start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """``[start, end)`` as ``parts`` adjacent half-open ranges (fewer if it is too short)."""
    parts = max(1, min(parts, end - start))
    step = (end - start) // parts
    bounds = [start + i * step for i in range(parts)] + [end]
    return list(pairwise(bounds))


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
    return [
        pl.col(c.name).cast(KIND_DTYPES[c.kind]).alias(names.by_storage[c.name]) for c in columns
    ]


def fetch_many(store: Store, queries: Sequence[str]) -> list[pl.DataFrame]:
    """Run read-only queries in parallel, one connection each (types as read)."""
    if len(queries) == 1:
        return [fetch(store, queries[0])]
    with ThreadPoolExecutor(len(queries), thread_name_prefix="mw-read") as threads:
        return list(threads.map(lambda sql: fetch(store, sql), queries))


def fetch(store: Store, sql: str) -> pl.DataFrame:
    """Run a read-only query and return its rows as a frame (types as read)."""
    path = _sqlite_file(store)
    if path is not None:
        return _READERS.read(path, sql)
    if store.is_sqlite:
        # An in-memory database is visible only through the engine's own connection.
        with store.read() as conn:
            return pl.read_database(sql, conn)
    try:
        return _adbc_postgres(store.reader_uri(), sql)
    except Exception as exc:  # ADBC raises its own DB-API hierarchy
        raise StoreError(f"reading from the store failed: {exc}") from exc


def _sqlite_file(store: Store) -> str | None:
    """The path of a file-backed SQLite store (None for PostgreSQL and in-memory SQLite)."""
    database = make_url(store.url).database if store.is_sqlite else None
    return database if database and database != ":memory:" else None


def _adbc_postgres(uri: str, sql: str) -> pl.DataFrame:
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        frame = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


# --- SQLite: ADBC in reader processes -----------------------------------------
# ADBC's SQLite driver carries its own copy of SQLite. Two copies of SQLite in one
# process must never open the same database: POSIX locks belong to the process, so
# each copy takes and drops the other's locks, and a connection opened in one copy
# resets the WAL index the other has mapped ("database disk image is malformed",
# failed writes, SIGBUS; sqlite.org/howtocorrupt.html section 2.2.1). The engine
# writes through Python's sqlite3, so ADBC reads run in reader processes: plain
# subprocesses (no multiprocessing, so any __main__ may read) that answer pickled
# (path, sql) requests with an Arrow IPC stream on their stdout, one at a time.


class _SqliteReaders:
    def __init__(self, size: int) -> None:
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes]] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(size)

    def read(self, path: str, sql: str) -> pl.DataFrame:
        with self._slots:
            try:
                proc, fresh = self._idle.get_nowait(), False
            except queue.Empty:
                proc, fresh = _start_reader(), True
            try:
                try:
                    error, table = _ask(proc, path, sql)
                except _ReaderGone:
                    if fresh:
                        raise
                    # An idle reader may have been killed (say by the OOM killer): once more.
                    _stop(proc)
                    proc = _start_reader()
                    error, table = _ask(proc, path, sql)
            except BaseException as exc:
                # Never reuse (or leak) a reader whose answer was not read to its end.
                _stop(proc)
                if isinstance(exc, _ReaderGone):
                    raise StoreError(f"the SQLite reader process failed: {exc}") from exc
                raise
            self._idle.put(proc)
        if error is not None:
            raise StoreError(f"reading from the store failed: {error}")
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame


class _ReaderGone(Exception):
    """The reader process died, or its answer was not in the protocol."""


_PROTOCOL = "modelwatch-sqlite-reader/1"  # change it whenever the exchange changes


def _ask(proc: subprocess.Popen[bytes], path: str, sql: str) -> tuple[str | None, Any]:
    """One request; the answer is a pickled ``(_PROTOCOL, error or None)`` then, on
    success, the rows as an Arrow IPC stream read straight from the pipe."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        pickle.dump((path, sql), proc.stdin, pickle.HIGHEST_PROTOCOL)
        proc.stdin.flush()
        answer = pickle.load(proc.stdout)
        if not (isinstance(answer, tuple) and len(answer) == 2 and answer[0] == _PROTOCOL):
            raise _ReaderGone(f"unexpected answer {answer!r:.80}")
        if answer[1] is not None:
            return str(answer[1]), None
        return None, pa.ipc.open_stream(proc.stdout).read_all()
    except Exception as exc:  # a dead pipe, or bytes that are not an answer
        raise _ReaderGone(repr(exc)) from exc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def _start_reader() -> subprocess.Popen[bytes]:
    # The reader imports modelwatch the way this process did; if its code differs
    # (upgraded meanwhile) it refuses to start rather than speak another protocol.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = f"from modelwatch.store.frames import _reader_main; _reader_main({_PROTOCOL!r})"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )


def _reader_main(protocol: str) -> None:
    """A reader process's loop; it ends when its parent closes the pipe (or exits)."""
    if protocol != _PROTOCOL:
        sys.exit(f"modelwatch SQLite reader speaks {_PROTOCOL}, not {protocol}")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    while True:
        try:
            path, sql = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        try:
            table = _sqlite_arrow(path, sql)
        except Exception as exc:
            pickle.dump((_PROTOCOL, str(exc) or repr(exc)), out, pickle.HIGHEST_PROTOCOL)
        else:
            pickle.dump((_PROTOCOL, None), out, pickle.HIGHEST_PROTOCOL)
            with pa.ipc.new_stream(out, table.schema) as writer:
                writer.write_table(table)
        out.flush()


def _sqlite_arrow(path: str, sql: str) -> Any:
    """The query's rows as an Arrow table, read with ADBC (in a reader process)."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    # Read-only: a reader never creates a missing database or writes to one.
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    with adbc_sqlite.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        cur.fetchall()
        cur.adbc_statement.set_options(**_SQLITE_ONE_BATCH)
        cur.execute(sql)
        return cur.fetch_arrow_table()


_READERS = _SqliteReaders(_PARTS)
