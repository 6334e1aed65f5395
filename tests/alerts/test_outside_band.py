"""``outside_band``: a policy fires when a figure leaves the band learnt from the reference."""

from __future__ import annotations

import polars as pl
import pytest
from pydantic import ValidationError

from alerts.conditions import evaluate, needed_metrics
from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.policies import Condition
from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from tests.alerts.helpers import RecordingNotifier, Results

SCHEMA = {
    "version_id": pl.Int64,
    "window_start_us": pl.Int64,
    "metric": pl.String,
    "column_name": pl.String,
    "label": pl.String,
    "segment": pl.String,
    "value": pl.Float64,
    "status": pl.String,
    "band_low": pl.Float64,
    "band_high": pl.Float64,
}


def _rows(*rows: tuple[int, float | None, str, float | None, float | None]) -> pl.DataFrame:
    data = [(1, w, "accuracy", "", "", "", v, s, lo, hi) for w, v, s, lo, hi in rows]
    return pl.DataFrame(data, schema=SCHEMA, orient="row")


def _condition(side: str = "either") -> Condition:
    return Condition.model_validate({"outside_band": {"metric": "accuracy", "side": side}})


def test_either_side_of_the_band_breaches_and_no_band_gives_no_verdict() -> None:
    rows = _rows(
        (0, 0.85, "ok", 0.8, 0.9),
        (1, 0.75, "breach", 0.8, 0.9),
        (2, 0.95, "breach", 0.8, 0.9),
        (3, 0.70, "ok", None, None),  # no band learnt: unknown
        (4, None, "no_labels", 0.8, 0.9),
    )
    verdicts = evaluate(_condition(), rows, None)
    assert [(v.window_start_us, v.breach, v.threshold) for v in verdicts] == [
        (0, False, 0.9),
        (1, True, 0.8),
        (2, True, 0.9),
    ]
    below = evaluate(_condition("below"), rows, None)
    assert [v.breach for v in below] == [False, True, False]
    assert needed_metrics(_condition()) == {"accuracy"}


def test_an_unknown_side_is_refused() -> None:
    with pytest.raises(ValidationError):
        _condition("sideways")


def test_a_policy_on_the_band_fires_through_the_service(store: Store) -> None:
    results = Results(store)
    config = Config.model_validate(
        {
            "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/"}}],
            "route": {"receiver": "oncall", "group_wait": "0s"},
            "policies": [
                {
                    "name": "estimated-accuracy-low",
                    "model": "churn",
                    "for": 2,
                    "condition": {"outside_band": {"metric": "accuracy", "side": "below"}},
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

    def window(i: int, value: float) -> None:
        status = Status.BREACH if value < 0.8 else Status.OK
        result = MetricResult("accuracy", value, 1000, status, band_low=0.8, band_high=0.9)
        results.window(i, [result])

    window(0, 0.85)
    window(1, 0.7)
    service.cycle()
    assert [a.state for a in service.alerts.all()] == ["pending"]
    window(2, 0.72)
    service.cycle()
    assert [a.state for a in service.alerts.all()] == ["firing"]
