"""A drift result's adjusted p-value and effect size are stored and served by the results API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from modelwatch.store.results import ResultQuery, query_results
from tests.alerts.helpers import Results


def test_adjusted_p_value_and_effect_round_trip(store: Store, client: TestClient) -> None:
    drifted = MetricResult(
        "data_drift",
        0.21,
        1000,
        Status.BREACH,
        column="age",
        p_value=1e-9,
        threshold=0.01,
        p_adjusted=2.7e-8,
        effect=0.5,
    )
    results = Results(store)
    results.window(0, [drifted])
    results.window(1, [MetricResult("volume", 100.0, 100)])
    [row, volume] = query_results(store, ResultQuery(version_ids=[1]))
    assert (row["p_value"], row["p_adjusted"], row["effect"]) == (1e-9, 2.7e-8, 0.5)
    assert volume["p_adjusted"] is None and volume["effect"] is None
    body = client.get("/v1/models/churn/results", params={"metric": "data_drift"}).json()
    [served] = body["results"]
    assert (served["p_value"], served["p_adjusted"], served["effect"]) == (1e-9, 2.7e-8, 0.5)
