"""A result's learnt threshold band is stored and served by the results API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from modelwatch.store.results import ResultQuery, query_results
from tests.alerts.helpers import Results


def test_band_round_trips(store: Store, client: TestClient) -> None:
    low = MetricResult(
        "accuracy",
        0.71,
        1000,
        Status.BREACH,
        ci_low=0.68,
        ci_high=0.74,
        band_low=0.8,
        band_high=0.9,
    )
    results = Results(store)
    results.window(0, [low])
    results.window(1, [MetricResult("volume", 100.0, 100)])
    [row, volume] = query_results(store, ResultQuery(version_ids=[1]))
    assert (row["band_low"], row["band_high"], row["ci_low"]) == (0.8, 0.9, 0.68)
    assert volume["band_low"] is None and volume["band_high"] is None
    body = client.get("/v1/models/churn/results", params={"metric": "accuracy"}).json()
    [served] = body["results"]
    assert (served["band_low"], served["band_high"], served["status"]) == (0.8, 0.9, "breach")
