"""The results API pages with a cursor, filters by monitor, and never cuts a list silently."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from modelwatch.monitors import MonitorSpec
from modelwatch.results import MetricResult
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from tests.alerts.helpers import HOUR_US, T0_US, Results

METRICS = ("accuracy", "data_drift", "volume", "null_rate", "cost")


def _bulk(store: Store, count: int, monitors: tuple[int, ...]) -> None:
    """``count`` current results spread over windows, metrics and monitors, in one insert."""
    with store.read() as conn:
        run_id = conn.execute(select(t.evaluation_runs.c.id)).scalar_one()
    rows: list[dict[str, Any]] = []
    for i in range(count):
        start = T0_US + (i // (len(METRICS) * 4)) * HOUR_US
        rows.append(
            {
                "run_id": run_id,
                "monitor_id": monitors[i % len(monitors)],
                "version_id": 1,
                "window_start_us": start,
                "window_end_us": start + HOUR_US,
                "current": 1,
                "segment": "",
                "metric": METRICS[i % len(METRICS)],
                "column_name": f"c{i % 4}",
                "label": "",
                "value": float(i),
                "n": 1,
                "status": "ok",
                "detail": "",
            }
        )
    with store.write() as conn:
        for chunk in range(0, len(rows), 20_000):
            conn.execute(insert(t.metric_results), rows[chunk : chunk + 20_000])


def _world(store: Store) -> tuple[int, int]:
    results = Results(store)
    results.window(-1, [MetricResult("volume", 1.0, 1)])  # a run for the rows to point at
    spec = MonitorSpec.model_validate({"name": "churn-daily", "model": "churn", "checks": []})
    other = MonitorStore(store, results.registry).create(spec, "t").id
    return results.monitors["churn"], other


def _page_through(client: TestClient, params: dict[str, Any]) -> list[float]:
    values: list[float] = []
    url: str | None = "/v1/models/churn/results"
    query: dict[str, Any] | None = params
    while url is not None:
        response = client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        values += [r["value"] for r in body["results"]]
        link = response.headers.get("link")
        if body["next"] is None:
            assert link is None
            url = None
        else:
            assert len(body["results"]) == params["limit"]
            match = re.fullmatch(r'<(.+)>; rel="next"', link or "")
            assert match and match.group(1) == body["next_url"]
            url, query = body["next_url"], None
    return values


def _each_once(client: TestClient, store: Store, count: int, limit: int) -> None:
    monitor, _ = _world(store)
    _bulk(store, count, (monitor,))
    values = _page_through(client, {"limit": limit})
    expected = [1.0] + [float(i) for i in range(count)]
    assert sorted(values) == sorted(expected)


def test_pages_return_each_result_exactly_once(client: TestClient, store: Store) -> None:
    _each_once(client, store, 3_000, 700)


@pytest.mark.reliability
def test_183600_results_page_exactly_once(client: TestClient, store: Store) -> None:
    _each_once(client, store, 183_600, 50_000)


def test_monitor_filter_returns_only_that_monitor(client: TestClient, store: Store) -> None:
    hourly, daily = _world(store)
    _bulk(store, 400, (hourly, daily))
    body = client.get("/v1/models/churn/results", params={"monitor": "churn-daily"}).json()
    assert len(body["results"]) == 200 and body["next"] is None
    assert {int(r["value"]) for r in body["results"]} == set(range(1, 400, 2))
    missing = client.get("/v1/models/churn/results", params={"monitor": "nope"})
    assert missing.status_code == 404


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", "WzEsMl0", "WyJhIiwiYiIsImMiXQ"])
def test_malformed_cursor_is_422_naming_cursor(
    client: TestClient, store: Store, cursor: str
) -> None:
    _world(store)
    response = client.get("/v1/models/churn/results", params={"cursor": cursor})
    assert response.status_code == 422
    assert "cursor" in response.text


def test_limit_above_maximum_is_422_naming_limit(client: TestClient, store: Store) -> None:
    _world(store)
    response = client.get("/v1/models/churn/results", params={"limit": 50_001})
    assert response.status_code == 422
    assert "limit" in response.text
