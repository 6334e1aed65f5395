"""The collector's choices: newest value per series, top-N drifted features, quality summaries,
firing alerts and the outbox; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
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

FAMILIES = {
    "ks": "drift",
    "missing_rate": "quality",
    "accuracy": "classification",
    "reconstruction_error": "drift",
    "domain_classifier": "drift",
    "estimated_accuracy": "estimation",
    "champion_challenger_sequential": "comparison",
}


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


def test_adjusted_p_values_and_effect_sizes_only_for_the_top_drifted(store: Store) -> None:
    results = Results(store)
    figures = [
        MetricResult(
            "ks",
            0.1 + i / 100,
            500,
            Status.BREACH if i < 2 else Status.OK,
            column=f"f{i:02d}",
            p_value=0.5 - i / 100,
            p_adjusted=min(1.0, (0.5 - i / 100) * 12),
            effect=0.2 + i / 50,
        )
        for i in range(12)
    ]
    results.window(0, figures)
    samples = _samples(store, top=3)
    top = {"f00": figures[0], "f01": figures[1], "f11": figures[11]}

    def by_feature(name: str) -> dict[str, float]:
        return {labels["feature"]: value for labels, value in samples[name]}

    assert by_feature("modelwatch_feature_drift_p_value_adjusted") == {
        c: f.p_adjusted for c, f in top.items()
    }
    assert by_feature("modelwatch_feature_drift_effect_size") == {
        c: f.effect for c, f in top.items()
    }
    # the bound holds whatever the number of columns: top_features series per version
    wide = _samples(store, top=5)
    assert len(wide["modelwatch_feature_drift_p_value_adjusted"]) == 5
    assert len(wide["modelwatch_feature_drift_effect_size"]) == 5


def _sequential(label: str, decision: str, low: float, high: float) -> MetricResult:
    detail = orjson.dumps({"decision": decision, "windows": 3}).decode()
    return MetricResult(
        "champion_challenger_sequential",
        (low + high) / 2,
        900,
        label=label,
        p_value=0.01,
        ci_low=low,
        ci_high=high,
        detail=detail,
    )


def test_bands_estimates_and_the_sequential_decision(store: Store) -> None:
    results = Results(store)
    old_band = MetricResult("reconstruction_error", 0.4, 500, band_low=0.1, band_high=0.9)
    results.window(0, [old_band, accuracy(0.8, band_low=0.5, band_high=0.95)])
    estimate = MetricResult(
        "estimated_accuracy", 0.83, 500, ci_low=0.79, ci_high=0.87, band_low=0.7, band_high=0.95
    )
    newest = [
        MetricResult("reconstruction_error", 1.2, 500, Status.BREACH, band_low=0.2, band_high=1.0),
        # bounded above only: the open side is left out, not exported as -inf
        MetricResult("domain_classifier", 0.61, 500, band_low=-math.inf, band_high=0.7),
        estimate,
        accuracy(0.9),  # no band on this window's figure: none is exported for it
    ]
    results.window(1, newest)
    results.window(
        1,
        [
            _sequential("log_loss", "challenger_better", -0.08, -0.01),
            _sequential("accuracy", "undecided", -0.02, 0.03),
        ],
        version="v2",
    )
    samples = _samples(store)
    lower, upper = "modelwatch_result_band_lower", "modelwatch_result_band_upper"
    assert pick(samples, lower, metric="reconstruction_error", version="v1") == [0.2]
    assert pick(samples, upper, metric="reconstruction_error", version="v1") == [1.0]
    assert pick(samples, "modelwatch_result_breached", metric="reconstruction_error") == [1.0]
    assert pick(samples, lower, metric="domain_classifier") == []
    assert pick(samples, upper, metric="domain_classifier") == [0.7]
    assert pick(samples, lower, metric="accuracy") == []
    assert pick(samples, upper, metric="estimated_accuracy", family="estimation") == [0.95]
    assert pick(samples, lower, metric="estimated_accuracy") == [0.7]
    # the sampling-error band of an estimate is its confidence interval series
    assert pick(samples, "modelwatch_result_ci_lower", metric="estimated_accuracy") == [0.79]
    assert pick(samples, "modelwatch_result_ci_upper", metric="estimated_accuracy") == [0.87]
    decision = "modelwatch_comparison_sequential_decision"
    assert pick(samples, decision, version="v2", alias="challenger", figure="log_loss") == [1.0]
    assert pick(samples, decision, version="v2", figure="accuracy") == [0.0]
    assert len(samples[decision]) == 2
    ci = "modelwatch_result_ci_lower"
    assert pick(samples, ci, metric="champion_challenger_sequential", label="log_loss") == [-0.08]
    # bands only for figures that have one: one series per result at most
    assert len(samples[upper]) == 3 and len(samples[lower]) == 2


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


def test_a_traffic_stream_alert_counts_under_its_lead_version(store: Store) -> None:
    from modelwatch.store.alerts import LEAD_VERSION, AlertStore, fingerprint

    Results(store)  # churn: v1 champion, v2 challenger
    labels = {
        "alertname": "feature-drift",
        "model": "churn",
        "stream": "served",
        "versions": "v1,v2",
        "severity": "warning",
    }
    row = {
        "fingerprint": fingerprint(labels),
        "policy": "feature-drift",
        "model": "churn",
        "labels": labels,
        "annotations": {LEAD_VERSION: "v1"},
        "state": "firing",
        "value": 0.5,
        "threshold": 0.3,
        "trend": [0.5],
        "consecutive": 1,
        "window_start_us": 0,
    }
    with store.write() as conn:
        AlertStore(store).save(conn, row, None, "test")
    assert _firing(_samples(store)) == [("v1", "champion", "feature-drift", "warning", 1.0)]
