"""GET /metrics: the collector reads the store on each scrape (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import time
from typing import Any

import orjson
import polars as pl
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from modelwatch.domain import Scope
from tests.conftest import churn_event

HOUR = 3600
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse(r.text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def registry_samples(registry: CollectorRegistry) -> Samples:
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


def pick(samples: Samples, name: str, **labels: str) -> list[float]:
    return [
        value
        for got, value in samples.get(name, [])
        if all(got.get(k) == v for k, v in labels.items())
    ]


def _reference() -> bytes:
    n = 200
    frame = pl.DataFrame(
        {
            "age": [30.0 + i % 60 for i in range(n)],
            "plan": ["pro", "basic"] * (n // 2),
            "active": [True, False] * (n // 2),
            "note": ["hi"] * n,
            "prediction": [1, 0] * (n // 2),
            "score": [0.75, 0.25] * (n // 2),
            "target": [1, 0] * (n // 2),
        }
    )
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _ingest_and_evaluate(client: TestClient) -> int:
    """60 predictions per version in the window two hours ago, labels for 40, usage for v1."""
    start = (int(time.time()) // HOUR - 2) * HOUR
    for version in ("v1", "v2"):
        r = client.post(f"/v1/models/churn/versions/{version}/reference", content=_reference())
        assert r.status_code == 201, r.text
        events = [churn_event(i, timestamp=start + 30 * i) for i in range(60)]
        r = client.post(
            "/v1/predictions", json={"model": "churn", "version": version, "events": events}
        )
        assert r.json()["accepted"] == 60
    labels = [{"request_id": f"req-{i}", "label": (i % 2) if i % 5 else 1} for i in range(40)]
    assert client.post("/v1/ground-truth", json={"model": "churn", "labels": labels}).is_success
    samples = [{"timestamp": start + i, "latency_ms": 10.0 + i} for i in range(50)]
    r = client.post(
        "/v1/resource-usage", json={"model": "churn", "version": "v1", "samples": samples}
    )
    assert r.is_success, r.text
    monitor = {"name": "churn-hourly", "model": "churn", "window": "1h", "backfill": "3h"}
    assert client.post("/v1/monitors", json=monitor).status_code == 201
    evaluation = client.app.state.evaluation  # type: ignore[attr-defined]
    for record in evaluation.monitors.list():
        evaluation.plan(record)
    runs = 0
    while evaluation.run_one() is not None:
        runs += 1
    return runs


def _latest_rows(client: TestClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(version, metric, label) -> the result of the newest window with a value, unsegmented,
    model-level figures only: what /metrics must show as modelwatch_result."""
    body: dict[str, Any] = client.get("/v1/models/churn/results?limit=1000").json()
    assert body["next"] is None
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in body["results"]:
        if r["segment"] is not None or r["column"] is not None or r["value"] is None:
            continue
        key = (r["version"], r["metric"], r["label"] or "")
        if key not in latest or r["window_start"] >= latest[key]["window_start"]:
            latest[key] = r
    return latest


def _latest_from_api(client: TestClient) -> dict[tuple[str, str, str], float]:
    return {key: r["value"] for key, r in _latest_rows(client).items()}


def test_metrics_carry_the_stored_results(churn: TestClient) -> None:
    assert _ingest_and_evaluate(churn) > 0
    samples = scrape(churn)
    expected = _latest_from_api(churn)
    assert ("v1", "accuracy", "") in expected and ("v2", "roc_auc", "") in expected
    exported = {
        (labels["version"], labels["metric"], labels["label"]): value
        for labels, value in samples["modelwatch_result"]
        if labels["column"] == ""
    }
    assert exported == expected
    for labels, _ in samples["modelwatch_result"]:
        assert labels["model"] == "churn"
        assert labels["alias"] == {"v1": "champion", "v2": "challenger"}[labels["version"]]
    assert pick(samples, "modelwatch_predictions_total", version="v1") == [60.0]
    assert pick(samples, "modelwatch_labels_joined_total", version="v2") == [40.0]
    assert pick(samples, "modelwatch_labels_received_total", model="churn") == [40.0]
    assert pick(samples, "modelwatch_usage_samples_total", version="v1") == [50.0]


def test_drift_latency_and_health_match_the_results(churn: TestClient) -> None:
    _ingest_and_evaluate(churn)
    samples = scrape(churn)
    expected = _latest_from_api(churn)
    assert pick(samples, "modelwatch_drifted_features_ratio", version="v1") == [
        expected[("v1", "data_drift", "drift_share")]
    ]
    results = churn.get("/v1/models/churn/results?metric=latency&version=v1").json()["results"]
    p95 = [
        r["value"]
        for r in results
        if r["label"] == "p95" and r["segment"] is None and r["value"] is not None
    ]
    assert pick(samples, "modelwatch_latency_seconds", version="v1", quantile="0.95") == [
        p95[-1] / 1000
    ]
    runs = churn.get("/v1/monitors/1/runs").json()
    done = runs["counts"]["done"]
    assert pick(samples, "modelwatch_evaluation_runs", monitor="churn-hourly", status="done") == [
        float(done)
    ]
    assert pick(samples, "modelwatch_evaluation_duration_seconds_count") == [float(done)]
    assert pick(samples, "modelwatch_store_up") == [1.0]
    assert pick(samples, "modelwatch_scheduler_planned_runs_total") == [float(done)]
    # The scrape reads the store again: new data shows without any push.
    extra = [churn_event(i, timestamp=int(time.time()) - 60) for i in range(100, 105)]
    churn.post("/v1/predictions", json={"model": "churn", "version": "v1", "events": extra})
    assert pick(scrape(churn), "modelwatch_predictions_total", version="v1") == [65.0]


def test_bands_and_the_sequential_decision_match_the_results(churn: TestClient) -> None:
    _ingest_and_evaluate(churn)
    samples = scrape(churn)
    rows = _latest_rows(churn)
    for edge, name in (("band_low", "lower"), ("band_high", "upper")):
        expected = {key: r[edge] for key, r in rows.items() if r[edge] is not None}
        exported = {
            (labels["version"], labels["metric"], labels["label"]): value
            for labels, value in samples.get(f"modelwatch_result_band_{name}", [])
        }
        assert exported == expected
    # the realized figures carry the band learnt from the reference's labelled rows
    assert ("v1", "accuracy", "") in expected
    decisions = {"challenger_better": 1.0, "undecided": 0.0, "champion_better": -1.0}
    sequential = {
        (version, label): decisions[orjson.loads(r["detail"])["decision"]]
        for (version, metric, label), r in rows.items()
        if metric == "champion_challenger_sequential"
    }
    assert ("v2", "accuracy") in sequential
    exported_decisions = {
        (labels["version"], labels["figure"]): value
        for labels, value in samples["modelwatch_comparison_sequential_decision"]
    }
    assert exported_decisions == sequential


def test_metrics_need_a_read_key_once_keys_exist(client: TestClient) -> None:
    keys = client.app.state.keys  # type: ignore[attr-defined]
    read_key = keys.create("prometheus", Scope.READ)
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {read_key}"})
    assert r.status_code == 200
    assert pick(parse(r.text), "modelwatch_store_up") == [1.0]
