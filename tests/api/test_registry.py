"""Model registry: models, versions, aliases and reference uploads."""

from __future__ import annotations

import io

import polars as pl
from fastapi.testclient import TestClient

from tests.conftest import CHURN_SPEC


def test_register_and_read_a_model(client: TestClient) -> None:
    r = client.post("/v1/models", json=CHURN_SPEC)
    assert r.status_code == 201
    assert r.json()["spec"]["classes"] == ["0", "1"]
    assert r.json()["spec"]["positive_class"] == "1"
    assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["churn"]
    assert client.get("/v1/models/churn").json()["versions"] == []
    assert client.post("/v1/models", json=CHURN_SPEC).status_code == 409
    assert client.get("/v1/models/nope").status_code == 404


def test_invalid_model_specs_name_the_field(client: TestClient) -> None:
    r = client.post("/v1/models", json={**CHURN_SPEC, "task": "binray"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "task"]
    bad_feature = {**CHURN_SPEC, "features": [{"name": "age", "type": "float"}]}
    assert client.post("/v1/models", json=bad_feature).json()["errors"][0]["loc"] == [
        "body",
        "features",
        0,
        "type",
    ]
    dupes = {**CHURN_SPEC, "features": [{"name": "a", "type": "numeric"}] * 2}
    assert "duplicate feature" in client.post("/v1/models", json=dupes).json()["detail"]
    multi = {"name": "m", "task": "multiclass", "features": [{"name": "a", "type": "numeric"}]}
    assert "classes" in client.post("/v1/models", json=multi).json()["detail"]


def test_versions_and_alias_moves_are_recorded(churn: TestClient) -> None:
    assert churn.post("/v1/models/churn/versions", json={"version": "v1"}).status_code == 409
    assert (
        churn.post(
            "/v1/models/churn/versions", json={"version": "v3", "alias": "shadow"}
        ).status_code
        == 201
    )
    r = churn.put("/v1/models/churn/aliases/champion", json={"version": "v2"})
    assert r.status_code == 200 and r.json()["version"] == "v2"
    body = churn.get("/v1/models/churn").json()
    aliases = {v["version"]: v["alias"] for v in body["versions"]}
    assert aliases == {"v1": None, "v2": "champion", "v3": "shadow"}
    history = [(h["alias"], h["from_version"], h["to_version"]) for h in body["alias_history"]]
    assert history[-1] == ("champion", "v1", "v2")
    assert all(h["changed_by"] == "anonymous" and h["changed_at"] for h in body["alias_history"])
    assert churn.put("/v1/models/churn/aliases/king", json={"version": "v2"}).status_code == 422
    assert churn.put("/v1/models/churn/aliases/champion", json={"version": "v9"}).status_code == 404


def _reference_frame(n: int = 50) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "age": [float(i) for i in range(n)],
            "plan": ["pro", "basic"] * (n // 2),
            "active": [True, False] * (n // 2),
            "note": ["x"] * n,
            "prediction": [0, 1] * (n // 2),
            "score": [0.2, 0.8] * (n // 2),
            "target": [0, 1] * (n // 2),
            "customer_id": list(range(n)),
        }
    )


def test_reference_upload_parquet_and_csv(churn: TestClient) -> None:
    buf = io.BytesIO()
    _reference_frame().write_parquet(buf)
    r = churn.post("/v1/models/churn/versions/v1/reference", content=buf.getvalue())
    assert r.status_code == 201, r.json()
    assert r.json()["rows"] == 50 and r.json()["format"] == "parquet"
    assert r.json()["ignored_columns"] == ["customer_id"]
    csv = _reference_frame(10).write_csv().encode()
    r = churn.post(
        "/v1/models/churn/versions/v2/reference", content=csv, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 201 and r.json()["format"] == "csv" and r.json()["rows"] == 10
    versions = {v["version"]: v for v in churn.get("/v1/models/churn").json()["versions"]}
    assert versions["v1"]["reference"]["rows"] == 50
    assert versions["v2"]["reference"]["rows"] == 10


def test_reference_upload_is_validated(churn: TestClient) -> None:
    url = "/v1/models/churn/versions/v1/reference"
    missing = _reference_frame().drop("age").write_csv().encode()
    r = churn.post(url, content=missing)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["age"]
    wrong = _reference_frame().with_columns(pl.lit("old").alias("age")).write_csv().encode()
    assert churn.post(url, content=wrong).json()["errors"][0]["loc"] == ["age"]
    bad_class = _reference_frame().with_columns(pl.lit(5).alias("target")).write_csv().encode()
    r = churn.post(url, content=bad_class)
    assert r.json()["errors"][0]["loc"] == ["target"] and "classes" in r.json()["errors"][0]["msg"]
    assert churn.post(url, content=b"\x00\x01garbage").status_code == 422
    assert churn.get("/v1/models/churn").json()["versions"][0]["reference"] is None
