"""The collector's choices: newest value per series, top-N drifted features, quality summaries,
firing alerts and the outbox; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from alerts.service import AlertingService
from dashboards.metrics import build_metrics_registry
from evaluators.scheduler import SchedulerState
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from tests.alerts.helpers import RecordingNotifier, Results, accuracy
from tests.dashboards.test_metrics import pick, registry_samples

FAMILIES = {"ks": "drift", "missing_rate": "quality", "accuracy": "classification"}


def _drift(column: str, value: float, p_value: float, breach: bool) -> MetricResult:
    status = Status.BREACH if breach else Status.OK
    return MetricResult("ks", value, 500, status, column=column, p_value=p_value)


def _missing(column: str, value: float, breach: bool = False) -> MetricResult:
    status = Status.BREACH if breach else Status.OK
    return MetricResult("missing_rate", value, 500, status, column=column)


def _samples(store: Store, top: int = 3, scheduler: Any = None) -> dict[str, Any]:
    return registry_samples(
        build_metrics_registry(store, families=FAMILIES, top_features=top, scheduler=scheduler)
    )


def test_per_feature_series_only_for_the_top_drifted(store: Store) -> None:
    results = Results(store)
    # 12 columns: f00 and f01 breach; among the others the smallest p-value is f11's.
    figures = [_drift(f"f{i:02d}", 0.1 + i / 100, 0.5 - i / 100, breach=i < 2) for i in range(12)]
    results.window(0, figures)
    samples = _samples(store, top=3)
    scores = {
        labels["feature"]: value
        for labels, value in samples["modelwatch_feature_drift_score"]
        if labels["version"] == "v1"
    }
    assert scores == {f.column: f.value for f in (figures[0], figures[1], figures[11])}
    flags = {lab["feature"]: v for lab, v in samples["modelwatch_feature_drifted"]}
    assert flags == {"f00": 1.0, "f01": 1.0, "f11": 0.0}
    assert pick(samples, "modelwatch_drifted_features", version="v1", metric="ks") == [2.0]
    assert len(_samples(store, top=10)["modelwatch_feature_drift_score"]) == 10


def test_the_newest_window_with_a_value_wins(store: Store) -> None:
    results = Results(store)
    results.window(0, [accuracy(0.9), _missing("age", 0.01), _missing("plan", 0.2, breach=True)])
    results.window(1, [accuracy(0.7), _missing("age", 0.3), _missing("plan", 0.0)])
    no_labels = MetricResult("accuracy", None, 0, Status.NO_LABELS)
    results.window(2, [no_labels])  # labels not in yet: the last figure stays
    results.window(1, [accuracy(0.6)], version="v2")
    samples = _samples(store)
    assert pick(samples, "modelwatch_result", metric="accuracy", version="v1") == [0.7]
    assert pick(samples, "modelwatch_result", metric="accuracy", version="v2") == [0.6]
    assert pick(samples, "modelwatch_result_samples", metric="accuracy", version="v1") == [500.0]
    ends = pick(samples, "modelwatch_result_window_end_timestamp_seconds", version="v1")
    assert ends == [(results_window_end(1))]
    # per-feature quality is summarised: the worst feature and how many breach
    assert pick(samples, "modelwatch_quality_worst_feature_value", metric="missing_rate") == [0.3]
    assert pick(samples, "modelwatch_quality_breached_features", metric="missing_rate") == [0.0]
    assert not pick(samples, "modelwatch_result", metric="missing_rate")


def results_window_end(i: int) -> float:
    from tests.alerts.helpers import HOUR_US, T0_US

    return (T0_US + (i + 1) * HOUR_US) / 1_000_000


def test_firing_alerts_and_the_outbox_appear(store: Store) -> None:
    results = Results(store)
    config = Config.model_validate(
        {
            "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/"}}],
            "route": {"receiver": "oncall", "group_wait": "0s"},
            "policies": [
                {
                    "name": "accuracy-low",
                    "model": "churn",
                    "severity": "critical",
                    "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
                }
            ],
        }
    )
    service = AlertingService(
        store,
        results.registry,
        config,
        "test",
        notifiers={"oncall": RecordingNotifier()},
        retry=RetryPolicy(initial_s=0.0, jitter=0.0),
    )
    results.window(0, [accuracy(0.95)])
    service.cycle()
    assert _firing(_samples(store)) == []
    results.window(1, [accuracy(0.5)])
    results.window(1, [accuracy(0.9)], version="v2")  # above the policy: quiet
    service.cycle()
    samples = _samples(store)
    assert _firing(samples) == [("v1", "champion", "accuracy-low", "critical", 1.0)]
    delivered = pick(samples, "modelwatch_outbox_deliveries", status="delivered")
    assert delivered and sum(delivered) >= 1
    assert pick(samples, "modelwatch_outbox_deliveries", status="dead") == [0.0] * len(delivered)


def _firing(samples: dict[str, Any]) -> list[tuple[str, str, str, str, float]]:
    return [
        (labels["version"], labels["alias"], labels["policy"], labels["severity"], value)
        for labels, value in samples.get("modelwatch_alerts", [])
        if labels["state"] == "firing"
    ]


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent/dir/modelwatch.db", "postgresql://postgres@127.0.0.1:1/test"]
)
def test_a_store_failure_is_logged_and_the_scrape_still_answers(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = Store(url)
    busy = SchedulerState(running=True, evaluated=3)
    registry = build_metrics_registry(unreachable, families=FAMILIES, scheduler=lambda: busy)
    with caplog.at_level(logging.ERROR):
        samples = registry_samples(registry)
    assert pick(samples, "modelwatch_store_up") == [0.0]
    assert "modelwatch_result" not in samples
    assert "metrics failed" in caplog.text
    # what the process knows without the store is still served
    assert pick(samples, "modelwatch_scheduler_running") == [1.0]
    assert pick(samples, "modelwatch_scheduler_evaluated_runs_total") == [3.0]
    # a process whose scheduler never ran (serve --no-scheduler) exports none of it
    idle = build_metrics_registry(unreachable, families=FAMILIES, scheduler=SchedulerState)
    assert not [name for name in registry_samples(idle) if "scheduler" in name]
