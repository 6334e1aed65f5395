"""API keys and scopes: ingest writes only, read reads, admin does everything."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.store.engine import Store
from tests.conftest import CHURN_SPEC, churn_event


@pytest.fixture
def tokens(churn: TestClient, store: Store) -> dict[str, str]:
    keys = KeyStore(store)
    return {s.value: keys.create(f"{s.value}-key", s) for s in Scope}


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_keys_the_api_is_open(churn: TestClient) -> None:
    assert churn.get("/v1/models").status_code == 200


def test_once_a_key_exists_requests_need_one(churn: TestClient, tokens: dict[str, str]) -> None:
    r = churn.get("/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert churn.get("/v1/models", headers=_h("mw_deadbeef_nope")).status_code == 401
    assert churn.get("/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401
    assert churn.get("/healthz").status_code == 200


def test_scopes(churn: TestClient, tokens: dict[str, str]) -> None:
    events = {"model": "churn", "version": "v1", "events": [churn_event(1)]}
    ingest, read, admin = _h(tokens["ingest"]), _h(tokens["read"]), _h(tokens["admin"])
    assert churn.post("/v1/predictions", json=events, headers=ingest).status_code == 200
    labels = {"model": "churn", "labels": [{"request_id": "req-1", "label": 1}]}
    assert churn.post("/v1/ground-truth", json=labels, headers=ingest).status_code == 200
    r = churn.get("/v1/models", headers=ingest)
    assert r.status_code == 403 and "ingest" in r.json()["detail"]
    assert (
        churn.post("/v1/models", json={**CHURN_SPEC, "name": "x"}, headers=ingest).status_code
        == 403
    )
    assert churn.get("/v1/models/churn", headers=read).status_code == 200
    assert churn.post("/v1/predictions", json=events, headers=read).status_code == 403
    assert (
        churn.post("/v1/models", json={**CHURN_SPEC, "name": "x"}, headers=read).status_code == 403
    )
    assert (
        churn.post("/v1/models", json={**CHURN_SPEC, "name": "x"}, headers=admin).status_code == 201
    )
    assert churn.post("/v1/predictions", json=events, headers=admin).json()["duplicates"] == 1
    moved = churn.put("/v1/models/churn/aliases/champion", json={"version": "v2"}, headers=admin)
    assert moved.json()["changed_by"] == "admin-key"


def test_revoked_keys_stop_working(churn: TestClient, tokens: dict[str, str], store: Store) -> None:
    KeyStore(store).revoke("read-key")
    assert churn.get("/v1/models", headers=_h(tokens["read"])).status_code == 401


def test_keys_are_stored_hashed(store: Store) -> None:
    token = KeyStore(store).create("k", Scope.READ)
    with store.read() as conn:
        row = conn.exec_driver_sql("SELECT prefix, secret_hash FROM api_keys").one()
    assert token.split("_", 2)[2] not in row.secret_hash
    assert token.startswith(f"mw_{row.prefix}_")
