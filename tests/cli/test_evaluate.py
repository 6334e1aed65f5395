"""modelwatch evaluate: plans and runs a model's monitors now, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient

from evaluators.runner import Runner
from evaluators.scheduler import EvaluationService
from modelwatch.cli import cli
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.store.runs import RunStore
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


def _hourly(churn: TestClient, backfill: str) -> None:
    monitor = {"name": "hourly", "model": "churn", "checks": ["volume"], "backfill": backfill}
    assert churn.post("/v1/monitors", json=monitor).status_code == 201


def _send(churn: TestClient, timestamps: list[int]) -> None:
    events = [churn_event(i, timestamp=ts) for i, ts in enumerate(timestamps)]
    for chunk in range(0, len(events), 500):
        batch = {"model": "churn", "version": "v1", "events": events[chunk : chunk + 500]}
        assert churn.post("/v1/predictions", json=batch).status_code == 200


def test_evaluate_waits_for_runs_another_worker_holds(churn: TestClient, store: Store) -> None:
    _send(churn, [T0 + i * 60 for i in range(180)])
    _hourly(churn, "1h")
    registry = Registry(store)
    service = EvaluationService(store, registry)
    (monitor,) = service.monitors.list()
    assert service.plan(monitor, T0 * 1_000_000) == 4
    held = RunStore(store).claim("serve-worker")  # a running `serve` took the oldest window
    assert held is not None
    finished_at: list[float] = []

    def serve() -> None:  # finishes once evaluate has claimed all it could
        runs = RunStore(store)
        while runs.counts(monitor.id).get("pending", 0):
            time.sleep(0.05)
        time.sleep(1.0)
        results = Runner(store, Registry(store), "serve-worker").evaluate(held)
        assert RunStore(store).finish(held, results, 1.0)
        finished_at.append(time.monotonic())

    worker = threading.Thread(target=serve)
    started = time.monotonic()
    worker.start()
    result = _run(store, "evaluate", "--model", "churn", "--since", "2025-11-20")
    worker.join()
    assert result.exit_code == 0, result.output
    assert finished_at and finished_at[0] > started
    assert "runs: 4 done" in result.output
    assert f"run {held.id} (window 2025-11-20T00:00:00+00:00), held by serve-worker: done" in (
        result.output
    )


def test_backfill_starts_at_the_first_event(churn: TestClient, store: Store) -> None:
    last_closed = int(time.time()) // 3600 * 3600 - 3600
    day = [last_closed - h * 3600 + 60 * m for h in range(24) for m in (5, 35)]
    _send(churn, day)
    _hourly(churn, "30d")
    month_ago = datetime.fromtimestamp(last_closed - 31 * 86_400, UTC).strftime("%Y-%m-%d")
    result = _run(store, "evaluate", "--model", "churn", "--since", month_ago)
    assert result.exit_code == 0, result.output
    # one day of data: one day of runs, none for the month before the version's first event
    assert "24 runs planned" in result.output and "runs: 24 done" in result.output
    volumes = _results(churn, "volume")
    assert [r["value"] for r in volumes] == [2.0] * 24
    first = datetime.fromisoformat(volumes[0]["window_start"]).timestamp()
    assert first == min(day) // 3600 * 3600


def test_expected_volume_is_learnt_from_full_windows(churn: TestClient, store: Store) -> None:
    base = int(time.time()) // 3600 * 3600 - 8 * 3600
    first = [base + 3000 + i * 60 for i in range(10)]  # traffic began ten minutes before 01:00
    full = [base + h * 3600 + i * 60 for h in (1, 2, 3) for i in range(60)]
    last = [base + 4 * 3600 + i * 60 for i in range(5)]  # and stopped five minutes after 04:00
    _send(churn, first + full + last)
    _hourly(churn, "30d")
    since = datetime.fromtimestamp(base, UTC).strftime("%Y-%m-%dT%H:%M")
    result = _run(store, "evaluate", "--model", "churn", "--since", since)
    assert result.exit_code == 0, result.output
    by_hour = {
        (datetime.fromisoformat(r["window_start"]).timestamp() - base) // 3600: r
        for r in _results(churn, "volume")
    }
    assert [by_hour[h]["value"] for h in range(6)] == [10.0, 60.0, 60.0, 60.0, 5.0, 0.0]
    assert by_hour[1]["detail"] == "no expected volume yet"  # its only history is partial
    for hour in (2, 3, 4, 5):  # 4: after a partial first window; 5: after a partial last one
        assert by_hour[hour]["detail"].startswith("expected 60 ±"), by_hour[hour]
    assert by_hour[5]["status"] == "breach" and by_hour[3]["status"] == "ok"
