"""Fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL tests use a fresh schema per test (``search_path`` in the URL) on
the server named by ``MODELWATCH_TEST_PG_URL`` (default: the local ``test``
database). Where the server is unreachable they skip, except under ``CI=true``
where a missing real component is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade

PG_URL = os.environ.get("MODELWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

CHURN_SPEC: dict[str, Any] = {
    "name": "churn",
    "task": "binary",
    "features": [
        {"name": "age", "type": "numeric"},
        {"name": "plan", "type": "categorical"},
        {"name": "active", "type": "boolean"},
        {"name": "note", "type": "text"},
    ],
    "segments": ["country"],
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


@pytest.fixture(scope="session")
def pg_server() -> str:
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {problem}")
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections land in a new, empty schema; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/modelwatch.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    upgrade(s)
    yield s
    s.dispose()


@pytest.fixture
def settings(store: Store) -> Settings:
    return Settings(database_url=store.url, max_body_bytes=1024 * 1024)


@pytest.fixture
def client(store: Store, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as c:
        yield c


@pytest.fixture
def churn(client: TestClient) -> TestClient:
    """A client with the ``churn`` model registered and versions v1 (champion), v2 (challenger)."""
    assert client.post("/v1/models", json=CHURN_SPEC).status_code == 201
    assert (
        client.post(
            "/v1/models/churn/versions", json={"version": "v1", "alias": "champion"}
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/v1/models/churn/versions", json={"version": "v2", "alias": "challenger"}
        ).status_code
        == 201
    )
    return client


def churn_reference_csv(rows: int = 40) -> bytes:
    """A small CSV reference for ``churn``: every feature, prediction and target."""
    frame = pl.DataFrame(
        {
            "age": [20.0 + i for i in range(rows)],
            "plan": ["pro", "basic"] * (rows // 2),
            "active": [True, False] * (rows // 2),
            "note": ["hi"] * rows,
            "prediction": [0, 1] * (rows // 2),
            "target": [0, 1] * (rows // 2),
        }
    )
    return frame.write_csv().encode()


def churn_event(i: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "request_id": f"req-{i}",
        "timestamp": "2026-11-20T10:00:00Z",
        "features": {
            "age": 30.0 + i,
            "plan": "pro" if i % 2 else "basic",
            "active": bool(i % 3),
            "note": "hi",
        },
        "prediction": i % 2,
        "score": 0.25 if i % 2 == 0 else 0.75,
        "segment": {"country": "DE"},
    }
    event.update(overrides)
    return event


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reliability tests (real processes, kills, outages) get up to two reruns: a failure
    in every try is a broken guarantee, one in a single try a timing accident on a loaded
    machine, and the rerun shows in the report as ``R``."""
    for item in items:
        if item.get_closest_marker("reliability") and not item.get_closest_marker("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=5))
