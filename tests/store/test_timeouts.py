"""Every wait for the store is bounded, and a store that does not answer is a StoreError."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from modelwatch.app import create_app
from modelwatch.errors import StoreError
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.timeouts import CLIENT_GRACE_S, Timeouts
from tests.reliability.proxy import PartitionProxy

SMALL = Timeouts(connect_s=2, pool_s=2, statement_s=1, lock_s=0.5, dead_peer_s=3)
SLACK_S = 1.0


@pytest.fixture
def proxied_url(pg_url: str) -> Iterator[tuple[str, PartitionProxy]]:
    """``pg_url`` through a proxy that the test can partition."""
    url = make_url(pg_url)
    with PartitionProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy


def _elapsed(fn: object) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.postgres
def test_a_silent_postgres_is_a_store_error_within_the_timeouts(
    proxied_url: tuple[str, PartitionProxy],
) -> None:
    url, proxy = proxied_url
    store = Store(url, timeouts=SMALL)
    store.ping()
    proxy.partition()
    # A pooled connection fails its check after the connect timeout; so does the reconnect.
    took, exc = _elapsed(store.ping)
    assert isinstance(exc, StoreError) and took < 2 * SMALL.connect_s + SLACK_S
    proxy.heal()
    store.ping()

    def write_into_a_partition() -> None:
        with store.write() as conn:
            proxy.partition()
            conn.exec_driver_sql("SELECT 1")

    took, exc = _elapsed(write_into_a_partition)
    assert isinstance(exc, StoreError) and "did not answer within" in str(exc)
    assert took < SMALL.client_deadline_s + SLACK_S
    proxy.heal()
    store.ping()  # the pool recovers by itself

    def commit_into_a_partition() -> None:
        with store.write() as conn:
            conn.exec_driver_sql("SELECT 1")
            proxy.partition()  # the COMMIT is the first thing sent into it

    took, exc = _elapsed(commit_into_a_partition)
    assert isinstance(exc, StoreError) and "did not answer within" in str(exc)
    assert took < SMALL.client_deadline_s + SLACK_S
    proxy.heal()
    store.ping()
    store.dispose()


@pytest.mark.postgres
def test_readyz_answers_within_two_seconds_when_the_store_is_silent(
    proxied_url: tuple[str, PartitionProxy],
) -> None:
    url, proxy = proxied_url
    store = Store(url)  # default timeouts: the store's own bounds are longer than 2 s
    upgrade(store)
    with TestClient(create_app(Settings(database_url=url), store)) as client:
        assert client.get("/readyz").status_code == 200
        proxy.partition()
        for _ in range(3):
            started = time.monotonic()
            r = client.get("/readyz")
            assert time.monotonic() - started < 2.5
            assert r.status_code == 503 and "did not answer within 2s" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200
        proxy.heal()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "readiness did not come back"
            time.sleep(0.2)
    store.dispose()


@pytest.mark.postgres
def test_statement_and_lock_timeouts_are_store_errors(pg_url: str) -> None:
    store = Store(pg_url, timeouts=SMALL)
    with store.write() as conn:
        conn.exec_driver_sql("CREATE TABLE held (id int PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO held VALUES (1)")

    def sleep() -> None:
        with store.read() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(10)")

    took, exc = _elapsed(sleep)
    assert isinstance(exc, StoreError) and "statement timeout" in str(exc)
    assert took < SMALL.statement_s + SLACK_S

    with psycopg.connect(make_url(pg_url).render_as_string(False)) as holder:
        holder.execute("SELECT * FROM held WHERE id = 1 FOR UPDATE")

        def update() -> None:
            with store.write() as conn:
                conn.exec_driver_sql("UPDATE held SET id = 2 WHERE id = 1")

        took, exc = _elapsed(update)
    assert isinstance(exc, StoreError) and "lock timeout" in str(exc)
    assert took < SMALL.lock_s + SLACK_S
    store.dispose()


# Holds the SQLite write lock for the time given, after writing the marker.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelwatch.store.engine import Store
    store = Store(sys.argv[1])
    with store.write():
        Path(sys.argv[2]).write_text("held")
        time.sleep(float(sys.argv[3]))
    """
)


def test_waiting_for_the_sqlite_write_lock_is_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/modelwatch.db"
    store = Store(url, timeouts=Timeouts(lock_s=0.5, statement_s=0.5))
    upgrade(store)
    marker = tmp_path / "marker"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(marker), "4"])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "holder did not start"
            time.sleep(0.01)

        def write() -> None:
            with store.write():
                pass

        for _ in range(2):  # the second writer inherits the first one's wait
            took, exc = _elapsed(write)
            assert isinstance(exc, StoreError) and "not free within 0.5s" in str(exc)
            assert took < 0.5 + SLACK_S
        assert holder.wait(timeout=30) == 0
        took, exc = _elapsed(write)  # once the holder is gone the lock is free again
        assert exc is None and took < 0.5
    finally:
        holder.kill()
    store.dispose()


def test_waiting_for_the_write_lock_within_one_process_is_bounded(tmp_path: Path) -> None:
    store = Store(
        f"sqlite:///{tmp_path}/modelwatch.db", timeouts=Timeouts(lock_s=0.3, statement_s=0.3)
    )
    upgrade(store)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.write():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)

    def write() -> None:
        with store.write():
            pass

    took, exc = _elapsed(write)
    release.set()
    thread.join()
    assert isinstance(exc, StoreError) and took < 0.3 + SLACK_S
    store.dispose()


def test_timeouts_come_from_the_environment() -> None:
    env = {
        "MODELWATCH_DB_CONNECT_TIMEOUT_S": "3",
        "MODELWATCH_DB_POOL_TIMEOUT_S": "4",
        "MODELWATCH_DB_STATEMENT_TIMEOUT_S": "12.5",
        "MODELWATCH_DB_READ_TIMEOUT_S": "900",
        "MODELWATCH_DB_LOCK_TIMEOUT_S": "1",
        "MODELWATCH_DB_DEAD_PEER_S": "8",
    }
    timeouts = Timeouts.from_settings(Settings.from_env(env))
    assert timeouts == Timeouts(
        connect_s=3, pool_s=4, statement_s=12.5, read_s=900, lock_s=1, dead_peer_s=8
    )
    assert timeouts.client_deadline_s == 12.5 + CLIENT_GRACE_S
    # SQLite writers queue behind working writers: longer than one lock wait.
    assert timeouts.sqlite_write_wait_s == 12.5
    assert Timeouts.from_settings(Settings.from_env({})) == Timeouts()
    with pytest.raises(ValueError, match="MODELWATCH_DB_LOCK_TIMEOUT_S='0'"):
        Settings.from_env({"MODELWATCH_DB_LOCK_TIMEOUT_S": "0"})
    with pytest.raises(ValueError, match="is not a number"):
        Settings.from_env({"MODELWATCH_DB_STATEMENT_TIMEOUT_S": "soon"})


def test_postgres_connections_carry_the_bounds_and_keep_the_urls_own() -> None:
    params = Timeouts().libpq_params(30, {"options": "-csearch_path=s1", "connect_timeout": "1"})
    assert "connect_timeout" not in params  # the URL's own value wins
    assert params["options"].startswith("-csearch_path=s1 -c statement_timeout=30000 ")
    assert "-c lock_timeout=5000" in params["options"]
    assert params["keepalives"] == 1 and params["tcp_user_timeout"] == 10000
    store = Store("postgresql://u@db:5432/mw?options=-csearch_path%3Ds1")
    uri = store.reader_uri()
    assert "statement_timeout%3D600000" in uri and "%20" in uri and "+" not in uri
    assert "search_path%3Ds1" in uri and "tcp_user_timeout=10000" in uri
    store.dispose()
