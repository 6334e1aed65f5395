"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import HEAD_REVISION


def test_healthz_and_readyz(client: TestClient, store: Store) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "store": store.dialect}


def test_readyz_fails_when_the_store_is_unreachable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1"
    with TestClient(create_app(Settings(database_url=url))) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"


def test_readyz_fails_when_the_schema_is_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    with TestClient(create_app(Settings(database_url=url))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "modelwatch db upgrade" in r.json()["detail"]


def test_readyz_says_when_the_schema_is_ahead_of_this_process(store: Store) -> None:
    """After a newer modelwatch migrated the store, an older process must not advise
    ``db upgrade``: the store is fine, the process is old."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        with TestClient(create_app(Settings(database_url=store.url), store)) as c:
            r = c.get("/readyz")
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert "ahead" in detail and "9999" in detail and "db upgrade" not in detail
    finally:
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE alembic_version SET version_num = '{HEAD_REVISION}'"))


def test_openapi_documents_the_ingest_bodies(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/predictions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/PredictionBatch"
    event = doc["components"]["schemas"]["EventDoc"]
    assert {"request_id", "timestamp", "features", "prediction"} <= set(event["required"])
    assert "/v1/models/{name}/aliases/{alias}" in doc["paths"]


def test_store_outage_is_json_503_with_retry_after() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1"
    with TestClient(create_app(Settings(database_url=url))) as c:
        r = c.get("/v1/models")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.json()["error"] == "store_unavailable"
