"""Slack alerts carry the figures behind them, read from the stored results: which columns
drifted and by how much, a multivariate score with its band, an estimate called estimated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

from alerts.notifiers.templates import figure_lines, short
from alerts.service import AlertingService
from evaluators.base import EvalContext, get_metric
from modelwatch import sequential
from modelwatch.domain import ModelSpec
from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from modelwatch.store.results import ResultQuery, query_results
from tests.alerts.fake_slack import FakeSlack
from tests.alerts.helpers import Results, slack_service
from tests.alerts.test_alerting import Clock
from tests.conftest import CHURN_SPEC


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token="xoxb-test", channels={"ml-oncall": "C0ONCALL"}) as server:
        yield server


def _service(store: Store, results: Results, slack: FakeSlack, condition: Any) -> AlertingService:
    policy = {"name": "watch", "condition": condition}
    service: AlertingService = slack_service(
        store, results, slack.base_url, [policy], clock=Clock()
    )
    return service


def _frame(n: int, seed: int, age_shift: float, plan_p: list[float]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "age": rng.normal(40 + age_shift, 10, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=plan_p),
            "active": rng.random(n) < 0.5,
            "note": ["x"] * n,
        }
    )


def _drift_results() -> list[MetricResult]:
    spec = ModelSpec.model_validate(CHURN_SPEC)
    baseline = _frame(4000, 1, 0.0, [0.5, 0.3, 0.2])
    window = _frame(2000, 2, 6.0, [0.3, 0.3, 0.4])
    return get_metric("data_drift").compute(EvalContext(spec, window, baseline))


def _sections(slack: FakeSlack) -> str:
    top = slack.top_level()
    assert len(top) == 1
    return "\n".join(json.dumps(b) for b in top[0].blocks)


def test_a_drift_alert_names_the_drifted_columns_largest_effect_first(
    store: Store, slack: FakeSlack
) -> None:
    results = Results(store)
    computed = _drift_results()
    results.window(0, computed)
    condition = {"drifted_share": {"op": ">=", "value": 0.3}}
    _service(store, results, slack, condition).cycle()
    body = _sections(slack)

    version = results.registry.get_version(results.registry.get_model("churn"), "v1")
    stored = query_results(store, ResultQuery([version.id], metric="data_drift"))
    drifted = sorted(
        (r for r in stored if r["status"] == "breach" and r["column_name"]),
        key=lambda r: -r["effect"],
    )
    assert [r["column_name"] for r in drifted] == ["age", "plan"]  # active did not move
    lines = [
        f"{r['column_name']}: {r['detail'].split(';')[0].upper()} {short(r['effect'])}"
        f" (floor {short(0.1 if r['column_name'] == 'age' else 0.05)}),"
        f" adj. p {short(r['p_adjusted'])}"
        for r in drifted
    ]
    positions = [body.index(line) for line in lines]
    assert positions == sorted(positions), "largest effect first"
    assert "active:" not in body


def test_more_than_five_drifted_columns_end_with_and_n_more() -> None:
    rows = [
        {
            "metric": "data_drift",
            "column_name": f"x{i}",
            "label": "",
            "status": "breach" if i < 8 else "ok",
            "effect": 0.1 + i / 100,
            "value": 0.2,
            "p_value": 1e-9,
            "p_adjusted": 1e-8,
            "detail": "ks; drift (p_adj=1e-08, holm over 9), effect 0.1 >= min_effect 0.1",
        }
        for i in range(9)
    ]
    lines = figure_lines("data_drift", rows)
    assert [line.split(":")[0] for line in lines[:5]] == ["x7", "x6", "x5", "x4", "x3"]
    assert lines[0] == "x7: KS 0.17 (floor 0.1), adj. p 1e-8"
    assert lines[5:] == ["and 3 more"]


def test_an_estimation_alert_says_estimated_and_no_labels_yet(
    store: Store, slack: FakeSlack
) -> None:
    results = Results(store)
    estimate = MetricResult(
        "estimated_accuracy",
        0.81,
        500,
        Status.BREACH,
        band_low=0.86,
        band_high=0.93,
        detail="calibrated; band [0.86, 0.93] from 12 reference chunks",
    )
    results.window(0, [estimate])
    condition = {"outside_band": {"metric": "estimated_accuracy"}}
    _service(store, results, slack, condition).cycle()
    assert "estimated accuracy 0.81 (band 0.86-0.93), no labels yet" in _sections(slack)


def test_a_multivariate_alert_gives_its_score_and_band(store: Store, slack: FakeSlack) -> None:
    results = Results(store)
    score = MetricResult(
        "reconstruction_error",
        1.42,
        500,
        Status.BREACH,
        threshold=1.08,
        detail="PCA: 2 of 5 components (0.65 of the variance); band [0.91, 1.08] from chunks",
    )
    results.window(0, [score])
    condition = {"status": {"metric": "reconstruction_error", "status": "breach"}}
    _service(store, results, slack, condition).cycle()
    assert "reconstruction error 1.42, band 0.91-1.08" in _sections(slack)


def test_a_sequential_promotion_gives_the_difference_interval_and_samples(
    store: Store, slack: FakeSlack
) -> None:
    results = Results(store)
    total = {"pairs": [4000.0, 200.0, 600.0]}  # 400 requests only the challenger got right, 200
    seq = sequential.from_stats(total, 0.05)
    detail = {"mode": "shadow", "alpha": 0.05, "planned_n": 10_000.0, "total": total}
    figure = MetricResult(
        "champion_challenger_sequential",
        float(seq.estimate),
        4000,
        label="accuracy",
        p_value=float(seq.p_value),
        ci_low=float(seq.low),
        ci_high=float(seq.high),
        detail=orjson.dumps({**detail, "decision": "challenger_better"}).decode(),
    )
    results.window(0, [figure], version="v2")
    condition = {"challenger_beats_champion": {"metric": "accuracy", "test": "sequential"}}
    _service(store, results, slack, condition).cycle()
    assert float(seq.low) > 0, "the seeded figures must be a win for the policy to fire"
    expected = (
        f"accuracy challenger - champion {float(seq.estimate):+.3g}, always-valid interval at"
        f" alpha 0.05 [{float(seq.low):+.3g}, {float(seq.high):+.3g}], 4000 samples so far"
        " (challenger better)"
    )
    assert expected in _sections(slack)


def test_a_domain_classifier_alert_names_its_top_three_features() -> None:
    def row(column: str, label: str, value: float) -> dict[str, Any]:
        return {
            "column_name": column,
            "label": label,
            "value": value,
            "threshold": 0.56,
            "band_low": None,
            "band_high": None,
            "detail": "5-fold AUC",
        }

    rows = [row("", "", 0.71), *(row(f"f{i}", "importance", i / 100) for i in range(5))]
    assert figure_lines("domain_classifier", rows) == [
        "AUC 0.71, threshold 0.56; top features: f4 +0.040, f3 +0.030, f2 +0.020"
    ]


def test_an_estimate_with_its_labels_in_shows_the_realized_figure() -> None:
    row = {
        "column_name": "",
        "value": 0.81,
        "band_low": 0.86,
        "band_high": 0.93,
        "detail": "calibrated; band [0.86, 0.93] from chunks; realized 0.7900, estimate's error",
    }
    assert figure_lines("estimated_f1", [row]) == [
        "estimated f1 0.81 (band 0.86-0.93), realized 0.79"
    ]
