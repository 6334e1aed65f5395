"""POST /v1/predictions, /v1/ground-truth, /v1/resource-usage on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import churn_event


def _post(client: TestClient, events: list[dict[str, Any]], version: str = "v1") -> Any:
    return client.post(
        "/v1/predictions", json={"model": "churn", "version": version, "events": events}
    )


def _counts(client: TestClient) -> dict[str, Any]:
    body = client.get("/v1/models/churn").json()
    return {v["version"]: v for v in body["versions"]} | {"labels": body["labels"]}


def test_predictions_are_stored_and_counted(churn: TestClient) -> None:
    r = _post(churn, [churn_event(i) for i in range(10)])
    assert r.status_code == 200
    assert r.json() == {"received": 10, "accepted": 10, "duplicates": 0, "updated": 0}
    v1 = _counts(churn)["v1"]
    assert v1["events"]["count"] == 10
    assert v1["events"]["latest"] == "2026-11-20T10:00:00Z"
    assert _counts(churn)["v2"]["events"]["count"] == 0


def test_repeated_request_ids_are_duplicates_not_rows(churn: TestClient) -> None:
    _post(churn, [churn_event(i) for i in range(5)])
    r = _post(churn, [churn_event(i) for i in range(3, 8)])
    assert r.json() == {"received": 5, "accepted": 3, "duplicates": 2, "updated": 0}
    r = _post(churn, [churn_event(20), churn_event(20)])
    assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 1
    assert _counts(churn)["v1"]["events"]["count"] == 9


def test_same_request_id_in_two_versions_is_shadow_traffic(churn: TestClient) -> None:
    _post(churn, [churn_event(1)], "v1")
    assert _post(churn, [churn_event(1)], "v2").json()["accepted"] == 1


@pytest.mark.parametrize(
    ("override", "path", "msg"),
    [
        ({"features": {"age": "old"}}, ["events", 0, "features", "age"], "must be a number"),
        (
            {"features": {"age": 1, "zip": "x"}},
            ["events", 0, "features", "zip"],
            "not in the model's schema",
        ),
        ({"features": {"active": "yes"}}, ["events", 0, "features", "active"], "true or false"),
        ({"features": {"plan": 1.5}}, ["events", 0, "features", "plan"], "category"),
        ({"prediction": 7}, ["events", 0, "prediction"], "classes"),
        ({"prediction": None}, ["events", 0, "prediction"], "required"),
        ({"score": 1.5}, ["events", 0, "score"], "between 0 and 1"),
        ({"scores": {"1": 0.4}}, ["events", 0, "scores"], "binary models send 'score'"),
        ({"timestamp": "yesterday"}, ["events", 0, "timestamp"], "RFC 3339"),
        ({"request_id": ""}, ["events", 0, "request_id"], "non-empty"),
        ({"segment": {"planet": "mars"}}, ["events", 0, "segment", "planet"], "not a segment key"),
        ({"colour": "red"}, ["events", 0, "colour"], "unknown field"),
    ],
)
def test_schema_violations_name_the_field(
    churn: TestClient, override: dict[str, Any], path: list[Any], msg: str
) -> None:
    r = _post(churn, [churn_event(0, **override)])
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error"
    locs = [e["loc"] for e in body["errors"]]
    assert path in locs, body
    match = next(e for e in body["errors"] if e["loc"] == path)
    assert msg in match["msg"]


def test_error_names_the_index_of_the_bad_event(churn: TestClient) -> None:
    events = [churn_event(i) for i in range(50)]
    events[37]["features"]["age"] = [1, 2]
    r = _post(churn, events)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["events", 37, "features", "age"]
    assert r.json()["detail"].startswith("events[37].features.age")


def test_bad_batch_stores_nothing_and_changes_nothing(churn: TestClient) -> None:
    _post(churn, [churn_event(i) for i in range(3)])
    before = _counts(churn)
    events = [churn_event(i) for i in range(3, 10)] + [churn_event(99, prediction="maybe")]
    assert _post(churn, events).status_code == 422
    assert _counts(churn) == before
    labels = [{"request_id": "req-0", "label": 1}, {"request_id": "req-1", "label": "bad"}]
    assert (
        churn.post("/v1/ground-truth", json={"model": "churn", "labels": labels}).status_code == 422
    )
    assert _counts(churn) == before


def test_envelope_errors(churn: TestClient) -> None:
    assert churn.post("/v1/predictions", content=b"{nope").status_code == 422
    r = churn.post("/v1/predictions", json={"model": "churn", "events": []})
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["version"] in locs and ["events"] in locs
    r = churn.post("/v1/predictions", json=[1, 2])
    assert r.status_code == 422


def test_unknown_model_and_version_are_404(churn: TestClient) -> None:
    r = churn.post(
        "/v1/predictions", json={"model": "nope", "version": "v1", "events": [churn_event(0)]}
    )
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = _post(churn, [churn_event(0)], version="v9")
    assert r.status_code == 404 and "v9" in r.json()["detail"]


def test_body_over_the_limit_is_413(churn: TestClient) -> None:
    big = [churn_event(i, features={"note": "x" * 2000}) for i in range(600)]
    r = _post(churn, big)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    assert _counts(churn)["v1"]["events"]["count"] == 0


def _labels(client: TestClient, labels: list[dict[str, Any]]) -> Any:
    return client.post("/v1/ground-truth", json={"model": "churn", "labels": labels})


def test_late_labels_join_their_predictions(churn: TestClient) -> None:
    _post(churn, [churn_event(i) for i in range(4)])
    r = _labels(churn, [{"request_id": "req-1", "label": 1, "timestamp": "2026-11-27T00:00:00Z"}])
    assert r.json() == {"received": 1, "accepted": 1, "duplicates": 0, "updated": 0}
    counts = _counts(churn)
    assert counts["v1"]["labels"]["joined"] == 1
    assert counts["v1"]["labels"]["latest"] == "2026-11-27T00:00:00Z"
    assert counts["labels"]["unjoined"] == 0


def test_early_labels_join_when_the_prediction_arrives(churn: TestClient) -> None:
    _labels(churn, [{"request_id": "req-2", "label": 0}, {"request_id": "req-3", "label": "1"}])
    counts = _counts(churn)
    assert counts["labels"]["count"] == 2 and counts["labels"]["unjoined"] == 2
    _post(churn, [churn_event(2), churn_event(3)], "v1")
    _post(churn, [churn_event(2)], "v2")
    counts = _counts(churn)
    assert counts["v1"]["labels"]["joined"] == 2
    assert counts["v2"]["labels"]["joined"] == 1
    assert counts["labels"]["unjoined"] == 0


def test_labels_are_idempotent_and_newer_corrections_win(churn: TestClient) -> None:
    first = {"request_id": "req-5", "label": 0, "timestamp": "2026-11-20T00:00:00Z"}
    assert _labels(churn, [first]).json()["accepted"] == 1
    assert _labels(churn, [first]).json() == {
        "received": 1,
        "accepted": 0,
        "duplicates": 1,
        "updated": 0,
    }
    stale = {"request_id": "req-5", "label": 1, "timestamp": "2026-11-19T00:00:00Z"}
    assert _labels(churn, [stale]).json()["updated"] == 0
    fix = {"request_id": "req-5", "label": 1, "timestamp": "2026-11-21T00:00:00Z"}
    assert _labels(churn, [fix]).json()["updated"] == 1
    assert _counts(churn)["labels"]["latest"] == "2026-11-21T00:00:00Z"


def test_usage_samples(churn: TestClient) -> None:
    samples = [
        {"timestamp": 1763632800 + i, "latency_ms": 10.0 + i, "cpu_seconds": 0.01, "tokens": 5}
        for i in range(3)
    ]
    r = churn.post(
        "/v1/resource-usage", json={"model": "churn", "version": "v2", "samples": samples}
    )
    assert r.json()["accepted"] == 3
    assert _counts(churn)["v2"]["usage"]["count"] == 3
    bad = [{"timestamp": 1763632800, "latency_ms": -1}]
    r = churn.post("/v1/resource-usage", json={"model": "churn", "version": "v2", "samples": bad})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["samples", 0, "latency_ms"]
    r = churn.post(
        "/v1/resource-usage",
        json={"model": "churn", "version": "v2", "samples": [{"timestamp": 1}]},
    )
    assert r.status_code == 422


def test_multiclass_and_regression_models(client: TestClient) -> None:
    spec = {
        "name": "iris",
        "task": "multiclass",
        "classes": ["setosa", "versicolor", "virginica"],
        "scores": True,
        "features": [{"name": "petal", "type": "numeric"}],
    }
    assert client.post("/v1/models", json=spec).status_code == 201
    client.post("/v1/models/iris/versions", json={"version": "1"})
    ok = {
        "request_id": "a",
        "timestamp": 1763632800,
        "features": {"petal": 1.2},
        "prediction": "setosa",
        "scores": {"setosa": 0.8, "versicolor": 0.1, "virginica": 0.1},
    }
    r = client.post("/v1/predictions", json={"model": "iris", "version": "1", "events": [ok]})
    assert r.json()["accepted"] == 1
    missing = dict(ok, request_id="b", scores={"setosa": 0.8, "versicolor": 0.2})
    r = client.post("/v1/predictions", json={"model": "iris", "version": "1", "events": [missing]})
    assert r.json()["errors"][0]["loc"] == ["events", 0, "scores", "virginica"]

    reg = {
        "name": "price",
        "task": "regression",
        "features": [{"name": "rooms", "type": "numeric"}],
    }
    assert client.post("/v1/models", json=reg).status_code == 201
    client.post("/v1/models/price/versions", json={"version": "1"})
    ev = {
        "request_id": "a",
        "timestamp": 1763632800,
        "features": {"rooms": 3},
        "prediction": 250000.5,
    }
    assert (
        client.post(
            "/v1/predictions", json={"model": "price", "version": "1", "events": [ev]}
        ).json()["accepted"]
        == 1
    )
    ev2 = dict(ev, request_id="b", prediction="cheap")
    r = client.post("/v1/predictions", json={"model": "price", "version": "1", "events": [ev2]})
    assert r.json()["errors"][0]["msg"] == "must be a number"
    lab = client.post(
        "/v1/ground-truth",
        json={"model": "price", "labels": [{"request_id": "a", "label": 249000}]},
    )
    assert lab.json()["accepted"] == 1


def test_refused_batches_are_recorded_for_data_quality(churn: TestClient, store: Any) -> None:
    events = [churn_event(i) for i in range(5)] + [churn_event(9, prediction="maybe")]
    assert _post(churn, events).status_code == 422
    labels = [{"request_id": "req-1", "label": "bad"}]
    refused = churn.post("/v1/ground-truth", json={"model": "churn", "labels": labels})
    assert refused.status_code == 422
    with store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT kind, items, errors, first_error FROM ingest_rejections ORDER BY id"
        ).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [("predictions", 6, 1), ("labels", 1, 1)]
    assert rows[0][3].startswith("events[5].prediction")
    assert _counts(churn)["v1"]["events"]["count"] == 0


def test_too_many_items_is_413_so_clients_split(churn: TestClient) -> None:
    churn.app.state.ingestor.max_batch = 10  # type: ignore[attr-defined]
    r = _post(churn, [churn_event(i) for i in range(11)])
    assert r.status_code == 413
    assert "at most 10 items per request, got 11" in r.json()["detail"]
    assert _post(churn, [churn_event(i) for i in range(10)]).json()["accepted"] == 10


def test_usage_samples_with_ids_are_idempotent(churn: TestClient) -> None:
    samples = [
        {"timestamp": 1763632800 + i, "latency_ms": 9.0, "sample_id": f"s{i}"} for i in range(3)
    ]
    body = {"model": "churn", "version": "v1", "samples": samples}
    assert churn.post("/v1/resource-usage", json=body).json()["accepted"] == 3
    again = churn.post("/v1/resource-usage", json=body).json()
    assert again == {"received": 3, "accepted": 0, "duplicates": 3, "updated": 0}
    anonymous = {"model": "churn", "version": "v1", "samples": [{"timestamp": 1, "cost": 0.1}] * 2}
    assert churn.post("/v1/resource-usage", json=anonymous).json()["accepted"] == 2
    assert _counts(churn)["v1"]["usage"]["count"] == 5
    bad = {
        "model": "churn",
        "version": "v1",
        "samples": [{"timestamp": 1, "cost": 1, "sample_id": ""}],
    }
    r = churn.post("/v1/resource-usage", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["samples", 0, "sample_id"]
