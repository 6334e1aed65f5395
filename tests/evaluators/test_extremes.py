"""Inputs near the float limits: a figure that overflows is an ``error`` saying so, never
an infinite or NaN value (found by tests/fuzz/test_evaluators.py)."""

from __future__ import annotations

import math

import polars as pl

from evaluators.base import EvalContext, get_metric
from modelwatch.domain import Task
from modelwatch.results import MetricResult, Status
from tests.evaluators.test_contract import SPECS, _frame, _usage

HUGE = 1.7e308  # near the float limit: sums and differences overflow


def _run(key: str, ctx: EvalContext) -> list[MetricResult]:
    results = get_metric(key).compute(ctx)
    for r in results:
        assert all(v is None or math.isfinite(v) for v in (r.value, r.p_value, r.ci_low, r.ci_high))
    return results


def _regression(n: int, seed: int, **columns: list[float]) -> pl.DataFrame:
    frame = _frame(SPECS[Task.REGRESSION], n, seed)
    return frame.with_columns(**{k: pl.Series(v, dtype=pl.Float64) for k, v in columns.items()})


def test_an_error_that_overflows_is_an_error_not_infinity() -> None:
    window = _regression(2, 1, prediction=[HUGE, -HUGE], label=[-HUGE, HUGE])
    ctx = EvalContext(SPECS[Task.REGRESSION], window, min_samples=1)
    for key in ("mae", "rmse", "mape"):
        [result] = _run(key, ctx)
        assert result.status is Status.ERROR and result.value is None, result
        assert "not finite" in result.detail


def test_the_comparison_of_an_overflowing_challenger_is_an_error() -> None:
    window = _regression(40, 1)
    challenger = _regression(40, 2, prediction=[HUGE * (-1) ** i for i in range(40)])
    ctx = EvalContext(SPECS[Task.REGRESSION], window, challenger=challenger, min_samples=1)
    rmse = [r for r in _run("champion_challenger", ctx) if r.label == "rmse"]
    assert rmse and all(r.value is None and r.status is Status.ERROR for r in rmse), rmse


def test_resource_figures_that_overflow_are_errors() -> None:
    usage = _usage(3).with_columns(pl.lit(HUGE).alias("gpu_seconds"), pl.lit(HUGE).alias("cost"))
    spec = SPECS[Task.BINARY]
    ctx = EvalContext(spec, _frame(spec, 1, 1), usage=usage, options={"window_hours": 1.0})
    for key in ("resource_per_1k", "cost_per_1k"):
        results = _run(key, ctx)
        assert any(r.status is Status.ERROR and "not finite" in r.detail for r in results), results


def test_a_drift_statistic_that_is_not_a_number_is_an_error() -> None:
    spec = SPECS[Task.REGRESSION]
    window = _regression(40, 1, x=[HUGE * (-1) ** i for i in range(40)])
    baseline = _regression(40, 2, x=[-HUGE * (-1) ** i for i in range(40)])
    ctx = EvalContext(spec, window, baseline, options={"method": "wasserstein"}, min_samples=1)
    [x] = [r for r in _run("wasserstein", ctx) if r.column == "x"]
    assert x.status is Status.ERROR and x.value is None and "not a number" in x.detail, x


def test_chi2_over_one_category_has_no_p_value() -> None:
    spec = SPECS[Task.REGRESSION]
    window = _frame(spec, 5, 1).with_columns(pl.lit("u").alias("c"))
    baseline = _frame(spec, 5, 2).with_columns(pl.lit("u").alias("c"))
    [c] = [r for r in _run("chi2", EvalContext(spec, window, baseline)) if r.column == "c"]
    assert c.status is Status.OK and c.value == 0.0 and c.p_value is None, c
