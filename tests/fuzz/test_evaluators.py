"""Hypothesis over every registered metric: windows and baselines of any size (empty,
one row), with NaN, infinities, extreme values, constant and all-null columns, single
classes and missing labels.

The invariant, from how results are built (``Metric.result`` carries a figure,
``status_only``/``unavailable`` carry none and say why):

- ``compute`` never raises and returns at least one result, each its own key;
- ``value`` is None or finite; so are ``p_value`` (in [0, 1]), ``ci_low``/``ci_high``
  (ordered) and ``threshold``;
- a result without a value is never ``ok``; a ``breach`` without one carries its test's
  p-value (chi2 over a category the reference lacks: an infinite statistic);
  ``insufficient_data`` never carries a value;
- an ``error`` result has a ``detail`` naming the cause.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.base import EvalContext, get_metric, metric_keys
from modelwatch.domain import ModelSpec, Task
from modelwatch.results import MetricResult, Status
from tests.evaluators.test_contract import SPECS

SHAPES = ["normal", "constant", "all_null", "nan", "inf", "extreme", "mixed"]
SIZES = [0, 1, 2, 3, 7, 40]


def _numeric(shape: str, n: int, rng: np.random.Generator) -> pl.Series:
    base = rng.normal(0.0, 1.0, n)
    values: list[float | None]
    if shape == "constant":
        values = [3.0] * n
    elif shape == "all_null":
        values = [None] * n
    elif shape == "nan":
        values = np.where(rng.random(n) < 0.5, np.nan, base).tolist()
    elif shape == "inf":
        values = np.where(rng.random(n) < 0.3, np.inf * np.sign(base), base).tolist()
    elif shape == "extreme":
        values = (base * 1e300).tolist()
    elif shape == "mixed":
        pool = [np.nan, np.inf, -np.inf, None, 0.0, -0.0, 1e308, -1e308, 5e-324]
        values = [pool[i] for i in rng.integers(0, len(pool), n)]
    else:
        values = base.tolist()
    return pl.Series(values, dtype=pl.Float64)


def _category(shape: str, n: int, rng: np.random.Generator) -> pl.Series:
    if shape == "all_null":
        return pl.Series([None] * n, dtype=pl.String)
    if shape == "constant":
        return pl.Series(["u"] * n, dtype=pl.String)
    pool = ["u", "v", "w", "", "ünï", None]
    return pl.Series([pool[i] for i in rng.integers(0, len(pool), n)], dtype=pl.String)


def _probability(shape: str, n: int, rng: np.random.Generator) -> pl.Series:
    if shape in ("all_null", "constant"):
        return pl.Series([None if shape == "all_null" else 0.5] * n, dtype=pl.Float64)
    if shape == "extreme":
        return pl.Series(rng.choice([0.0, 1.0], n), dtype=pl.Float64)
    return pl.Series(rng.random(n), dtype=pl.Float64)


def _frame(spec: ModelSpec, n: int, shapes: dict[str, str], seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {
        "request_id": [f"r{i}" for i in range(n)],
        "timestamp": pl.Series(
            [datetime(2026, 1, 1, tzinfo=UTC)] * n, dtype=pl.Datetime("us", "UTC")
        ),
        "x": _numeric(shapes["x"], n, rng),
        "c": _category(shapes["c"], n, rng),
    }
    if "flag" in {f.name for f in spec.features}:
        cols["flag"] = pl.Series((rng.random(n) < 0.3).tolist(), dtype=pl.Boolean)
        cols["t"] = pl.Series(["free text"] * n, dtype=pl.String)
    if spec.task is Task.REGRESSION:
        cols["prediction"] = _numeric(shapes["prediction"], n, rng)
        cols["label"] = _numeric(shapes["label"], n, rng)
    else:
        classes = spec.class_list
        one = shapes["label"] == "constant"
        picked = [classes[0] if one else classes[i] for i in rng.integers(0, len(classes), n)]
        cols["prediction"] = pl.Series(picked, dtype=pl.String)
        labels = [classes[-1] if one else classes[i] for i in rng.integers(0, len(classes), n)]
        if shapes["label"] == "all_null":
            labels = [None] * n  # type: ignore[list-item]
        cols["label"] = pl.Series(labels, dtype=pl.String)
        if spec.task is Task.BINARY:
            cols["score"] = _probability(shapes["prediction"], n, rng)
        else:
            for cls in classes:
                cols[f"score_{cls}"] = _probability(shapes["prediction"], n, rng)
    return pl.DataFrame(cols)


def _usage(n: int, shape: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stamp = pl.Series([datetime(2026, 1, 1, tzinfo=UTC)] * n, dtype=pl.Datetime("us", "UTC"))
    columns = ["latency_ms", "cpu_seconds", "memory_mb", "gpu_seconds", "cost"]
    return pl.DataFrame({"timestamp": stamp, **{c: _numeric(shape, n, rng).abs() for c in columns}})


@st.composite
def contexts(draw: st.DrawFn, spec: ModelSpec) -> EvalContext:
    def shapes() -> dict[str, str]:
        return {c: draw(st.sampled_from(SHAPES)) for c in ("x", "c", "prediction", "label")}

    seed = draw(st.integers(0, 2**16))
    window = _frame(spec, draw(st.sampled_from(SIZES)), shapes(), seed)
    baseline = _frame(spec, draw(st.sampled_from(SIZES)), shapes(), seed + 1)
    challenger = _frame(spec, draw(st.sampled_from(SIZES)), shapes(), seed + 2)
    usage = _usage(draw(st.sampled_from(SIZES)), draw(st.sampled_from(SHAPES)), seed + 3)
    options = {
        "window_hours": draw(st.sampled_from([1.0, 1e-9, 1e9])),
        "prices": {"cpu_hour": 0.1, "gpu_hour": 2.0, "gb_hour": 0.01},
        "expected_volume": draw(st.sampled_from([400.0, 0.0, 1.0])),
        "rejected_events": draw(st.sampled_from([0, 3])),
        "challenger_usage": _usage(draw(st.sampled_from(SIZES)), "normal", seed + 4),
    }
    return EvalContext(
        spec=spec,
        window=window,
        baseline=baseline if draw(st.booleans()) else None,
        usage=usage,
        challenger=challenger,
        options=options,
        min_samples=draw(st.sampled_from([1, 2, 30])),
    )


def _finite(v: float | None) -> bool:
    return v is None or math.isfinite(v)


def check_result(result: MetricResult, key: str) -> None:
    assert isinstance(result, MetricResult), result
    assert result.metric == key, result
    assert isinstance(result.status, Status), result
    assert isinstance(result.n, int) and result.n >= 0, result
    for name in ("value", "p_value", "ci_low", "ci_high", "threshold"):
        assert _finite(getattr(result, name)), (name, result)
    if result.p_value is not None:
        assert 0.0 <= result.p_value <= 1.0, result
    if result.ci_low is not None and result.ci_high is not None:
        assert result.ci_low <= result.ci_high + 1e-9 * max(1.0, abs(result.ci_high)), result
    if result.value is None:
        assert result.status is not Status.OK, result
        assert result.status is not Status.BREACH or result.p_value is not None, result
    if result.status is Status.INSUFFICIENT_DATA:
        assert result.value is None, result
    if result.status is Status.ERROR:
        assert result.detail, result


def run_metric(key: str, ctx: EvalContext) -> list[MetricResult]:
    results = get_metric(key).compute(ctx)
    assert isinstance(results, list) and results, f"{key} returned no result"
    for result in results:
        check_result(result, key)
    return results


def _cases() -> list[tuple[str, Task]]:
    return [
        (key, task)
        for key in metric_keys()
        if not key.startswith("test_")
        for task in sorted(get_metric(key).tasks)
    ]


def _fuzz(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize(("key", "task"), _cases(), ids=lambda v: str(v))
@_fuzz(6)
@given(data=st.data())
def test_metrics_never_crash_nor_report_a_non_finite_figure(
    key: str, task: Task, data: st.DataObject
) -> None:
    run_metric(key, data.draw(contexts(SPECS[task])))


@pytest.mark.reliability
@pytest.mark.parametrize(("key", "task"), _cases(), ids=lambda v: str(v))
@_fuzz(40)
@given(data=st.data())
def test_metrics_never_crash_nor_report_a_non_finite_figure_long(
    key: str, task: Task, data: st.DataObject
) -> None:
    run_metric(key, data.draw(contexts(SPECS[task])))
