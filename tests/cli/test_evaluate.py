"""modelwatch evaluate: plans and runs a model's monitors now, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.cli import cli
from modelwatch.store.engine import Store
from tests.conftest import churn_event

T0 = 1_763_596_800  # 2025-11-20T00:00:00Z


def _run(store: Store, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"MODELWATCH_DATABASE_URL": store.url})


def _results(client: TestClient, metric: str) -> list[dict[str, Any]]:
    return list(client.get("/v1/models/churn/results", params={"metric": metric}).json()["results"])


def test_evaluate_runs_every_window_once(churn: TestClient, store: Store) -> None:
    events = [churn_event(i, timestamp=T0 + i * 60, prediction=1, score=0.9) for i in range(180)]
    churn.post("/v1/predictions", json={"model": "churn", "version": "v1", "events": events})
    labels = [{"request_id": f"req-{i}", "label": i % 2} for i in range(180)]
    churn.post("/v1/ground-truth", json={"model": "churn", "labels": labels})
    monitor = {
        "name": "hourly",
        "model": "churn",
        "checks": ["accuracy", "volume"],
        "min_samples": 10,
        "backfill": "1h",  # the serving version's empty windows: only the last hour
    }
    assert churn.post("/v1/monitors", json=monitor).status_code == 201

    result = _run(store, "evaluate", "--model", "churn", "--since", "2025-11-20")
    assert result.exit_code == 0, result.output
    # three hours with data, and the last closed hour, empty: the champion got no traffic
    assert "4 runs planned" in result.output and "runs: 4 done" in result.output
    accuracy = _results(churn, "accuracy")
    assert [(r["value"], r["n"]) for r in accuracy[:3]] == [(0.5, 60)] * 3
    assert accuracy[3]["status"] == "insufficient_data"
    assert [r["value"] for r in _results(churn, "volume")] == [60.0, 60.0, 60.0, 0.0]

    again = _run(store, "evaluate", "--model", "churn", "--since", "2025-11-20")
    assert "0 runs planned" in again.output
    missing = _run(store, "evaluate", "--model", "nope")
    assert missing.exit_code != 0 and "unknown model 'nope'" in missing.output
