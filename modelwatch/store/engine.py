"""Engines and sessions: SQLite (embedded default, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import URL, Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from modelwatch.errors import StoreError
from modelwatch.settings import Settings
from modelwatch.store.cold import ColdEvents
from modelwatch.store.deadline import Watchdog
from modelwatch.store.timeouts import Timeouts
from modelwatch.store.writelock import WriteLock, lock_path

__all__ = ["Store", "Timeouts", "normalize_url"]


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and point them at psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(busy_ms: int, dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL syncs the WAL at every commit, so an acknowledged batch survives a power loss
    # or an OS crash, not only a crash of the process (NORMAL's promise); 0.3 ms a commit.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


class Store:
    """The database: one engine, transactions, and the dialect facts callers need.

    Every wait for the database is bounded (see :class:`Timeouts`); a store that does
    not answer in time is a :class:`StoreError`, which the API answers with 503.
    """

    def __init__(self, url: str, *, echo: bool = False, timeouts: Timeouts | None = None) -> None:
        self.url = normalize_url(url)
        self.timeouts = timeouts or Timeouts()
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database {parsed.drivername!r}: use sqlite or postgresql"
            )
        self._watchdog = Watchdog()
        self.cold: ColdEvents | None = None
        """Where archived raw events are read from (set by the archive's wiring)."""
        self.engine: Engine = create_engine(self.url, **self._engine_args(parsed, echo))
        if self.is_sqlite:
            busy_ms = round(self.timeouts.sqlite_write_wait_s * 1000)
            event.listen(self.engine, "connect", functools.partial(_sqlite_pragmas, busy_ms))
        else:
            event.listen(self.engine, "connect", _mark_fresh)
            event.listen(self.engine, "checkout", self._ping_on_checkout)
        # SQLite has one writer: writers queue on a lock rather than in its busy handler.
        self._write_lock = (
            WriteLock(lock_path(parsed.database), timeout_s=self.timeouts.sqlite_write_wait_s)
            if self.is_sqlite
            else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store the settings name, with their timeouts."""
        return cls(settings.database_url, timeouts=Timeouts.from_settings(settings))

    def _engine_args(self, parsed: URL, echo: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            wait = self.timeouts.sqlite_write_wait_s
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": wait}
            return kwargs
        t = self.timeouts
        # Pooled connections are checked on checkout by _ping_on_checkout, under a deadline.
        kwargs.update(pool_size=10, max_overflow=20, pool_timeout=t.pool_s)
        kwargs["connect_args"] = t.libpq_params(t.statement_s, parsed.query)
        return kwargs

    def reader_uri(self) -> str:
        """A libpq URI for bulk window and reference reads on PostgreSQL (ADBC): the
        store's URL with the read timeout and the same connect and keepalive bounds."""
        parsed = make_url(self.url)
        params = self.timeouts.libpq_params(self.timeouts.read_s, parsed.query)
        query = {**parsed.query, **{k: str(v) for k, v in params.items()}}
        base = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        # libpq decodes %20 but not '+' as a space.
        return f"{base}?{urlencode(query, doseq=True, quote_via=quote)}"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT for ``table``, which has ``on_conflict_do_nothing/update``."""
        if self.is_postgres:
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a transaction that ends (under the deadline) with the block."""
        with (
            self._translated("store unreachable"),
            self.engine.connect() as conn,
            self._watched(conn),
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction: committed when the block exits cleanly, rolled back otherwise.

        The transaction is begun and ended inside the deadline: a COMMIT sent into a
        partition waits as long as any statement, so it is watched like one."""
        with (
            self._write_lock or nullcontext(),
            self._translated("store write failed"),
            self.engine.connect() as conn,
            self._watched(conn),
            conn.begin(),
        ):
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """The driver's and the pool's failures to reach the store, as StoreError."""
        try:
            yield
        except _Silent as exc:
            raise StoreError(str(exc)) from exc.__cause__
        except SATimeoutError as exc:
            detail = f"no free store connection within {self.timeouts.pool_s:g}s"
            raise StoreError(f"{what}: {detail}") from exc
        except _driver_errors() as exc:
            raise StoreError(f"{what}: {getattr(exc, 'orig', None) or exc}") from exc

    @contextmanager
    def _watched(self, conn: Connection) -> Iterator[None]:
        """Cut the connection if the block outlives the client deadline."""
        if not self.is_postgres:
            yield
            return
        seconds = self.timeouts.client_deadline_s
        with self._watchdog.watch(conn.connection.driver_connection, seconds) as watch:
            try:
                yield
            except Exception as exc:
                if not watch.fired:
                    raise
                silent = _Silent(f"store did not answer within {seconds:g}s")
                raise silent from exc

    def _ping_on_checkout(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Check a pooled connection before use; a silent one is cut after the connect
        timeout, and so is every operation that has waited as long (the server is gone)."""
        if record.info.pop(_FRESH, False):
            return
        seconds = self.timeouts.connect_s
        with self._watchdog.watch(dbapi_conn, seconds) as watch:
            try:
                self.engine.dialect.do_ping(dbapi_conn)
                return
            except Exception as exc:
                problem = exc
        if watch.fired:
            self._watchdog.cut_older_than(seconds)
        raise InvalidatePoolError(f"pooled store connection failed its check: {problem}")


class _Silent(Exception):
    """A connection cut by the client deadline (becomes a StoreError at the boundary)."""


_FRESH = "modelwatch_fresh"


def _mark_fresh(_dbapi_conn: Any, record: Any) -> None:
    record.info[_FRESH] = True


def _driver_errors() -> tuple[type[Exception], ...]:
    """The errors of a store that cannot be reached. psycopg is imported only by engines on
    PostgreSQL (SQLAlchemy loads it then): an SQLite process never pays for its import."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (OperationalError,)
    return (OperationalError, psycopg.OperationalError)
