"""Cost and latency metrics: exact answers on hand-built usage frames, and the bad-data cases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from evaluators.metrics.cost import quantile_ci
from modelwatch.domain import ModelSpec

SPEC = ModelSpec.model_validate(
    {"name": "m", "task": "regression", "features": [{"name": "x", "type": "numeric"}]}
)
NAN, INF = math.nan, math.inf
USAGE_COLUMNS = ("latency_ms", "cpu_seconds", "gpu_seconds", "memory_mb", "cost")
PRICES = {"cpu_hour": 3.6, "gpu_hour": 7.2, "gb_hour": 0.5}


def usage(**columns: Sequence[float | None]) -> pl.DataFrame:
    rows = len(next(iter(columns.values())))
    data = {c: columns.get(c, [None] * rows) for c in USAGE_COLUMNS}
    return pl.DataFrame(data, schema=dict.fromkeys(USAGE_COLUMNS, pl.Float64))


def window(rows: int) -> pl.DataFrame:
    return pl.DataFrame({"x": np.zeros(rows)})


def run(
    key: str,
    frame: pl.DataFrame | None,
    predictions: int = 100,
    min_samples: int = 1,
    **options: Any,
) -> dict[str | None, MetricResult]:
    ctx = EvalContext(
        spec=SPEC, window=window(predictions), usage=frame, options=options, min_samples=min_samples
    )
    return {r.label: r for r in get_metric(key).compute(ctx)}


def test_registered_in_the_cost_family() -> None:
    assert {"latency", "resource_per_1k", "cost_per_1k"} <= set(metric_keys(Family.COST))


# --- latency --------------------------------------------------------------------------


def test_latency_quantiles_with_order_statistic_cis() -> None:
    values = np.random.default_rng(1).permutation(np.arange(1.0, 101.0))
    frame = usage(latency_ms=[*values.tolist(), None, NAN, INF])
    results = run("latency", frame)
    assert list(results) == ["p50", "p95", "p99"]
    p50 = results["p50"]
    assert (p50.value, p50.n, p50.column) == (50.5, 100, "latency_ms")
    # The classic table: the 95% CI of the median of 100 values is x(40) .. x(61).
    assert (p50.ci_low, p50.ci_high) == (40.0, 61.0)
    assert results["p95"].value == pytest.approx(np.quantile(values, 0.95))
    assert results["p99"].value == pytest.approx(np.quantile(values, 0.99))
    for label, q in (("p95", 0.95), ("p99", 0.99)):
        low = max(stats.binom.ppf(0.025, 100, q), 1)
        high = min(stats.binom.ppf(0.975, 100, q) + 1, 100)
        assert (results[label].ci_low, results[label].ci_high) == (low, high)


def test_quantile_ci_covers_the_true_quantile() -> None:
    rng = np.random.default_rng(7)
    samples = rng.exponential(1.0, size=(400, 60))
    true_median = math.log(2.0)
    covered = 0
    for row in samples:
        _, low, high = quantile_ci(row, 0.5, 0.95)
        covered += low <= true_median <= high
    assert covered / 400 >= 0.93


def test_latency_confidence_option() -> None:
    frame = usage(latency_ms=list(np.arange(1.0, 101.0)))
    narrow = run("latency", frame, confidence=0.5)["p50"]
    wide = run("latency", frame)["p50"]
    assert wide.ci_low is not None and narrow.ci_low is not None
    assert wide.ci_low < narrow.ci_low <= 50.5
    assert run("latency", frame, confidence=1.5)["p50"].status is Status.ERROR


@pytest.mark.parametrize(
    ("frame", "minimum"),
    [
        (None, 1),
        (usage(latency_ms=[]), 1),
        (usage(latency_ms=[None, NAN]), 1),
        (usage(latency_ms=[1.0, 2.0, 3.0]), 4),
    ],
)
def test_latency_insufficient_data(frame: pl.DataFrame | None, minimum: int) -> None:
    results = run("latency", frame, min_samples=minimum)
    assert [r.status for r in results.values()] == [Status.INSUFFICIENT_DATA] * 3
    assert all(r.value is None for r in results.values())


# --- resource_per_1k ------------------------------------------------------------------


def test_resources_per_1k_predictions() -> None:
    frame = usage(
        cpu_seconds=[1.0, 2.0, 3.0, None, NAN], memory_mb=[512.0, 1024.0, None, None, 768.0]
    )
    results = run("resource_per_1k", frame, predictions=500, window_hours=2.0)
    assert results["cpu_seconds"].value == pytest.approx(6.0 / 500 * 1000)
    # mean 768 MB = 0.75 GB held for 2 h = 1.5 GB-h over 500 predictions
    assert results["memory_gb_hours"].value == pytest.approx(1.5 / 500 * 1000)
    assert results["memory_gb_hours"].n == 500
    gpu = results["gpu_seconds"]
    assert (gpu.status, gpu.value) == (Status.NOT_APPLICABLE, None)


def test_gpu_seconds_and_missing_window_hours() -> None:
    frame = usage(gpu_seconds=[10.0, 30.0], memory_mb=[100.0, 100.0])
    results = run("resource_per_1k", frame, predictions=40)
    assert results["gpu_seconds"].value == pytest.approx(1000.0)
    assert results["memory_gb_hours"].status is Status.ERROR
    assert results["cpu_seconds"].status is Status.NOT_APPLICABLE


def test_resources_of_an_empty_window_are_insufficient() -> None:
    frame = usage(cpu_seconds=[1.0])
    for predictions, minimum in ((0, 1), (10, 11)):
        results = run("resource_per_1k", frame, predictions, minimum, window_hours=1.0)
        assert [r.status for r in results.values()] == [Status.INSUFFICIENT_DATA] * 3


def test_resources_without_usage_are_insufficient() -> None:
    for frame in (None, usage(cpu_seconds=[])):
        results = run("resource_per_1k", frame, window_hours=1.0)
        assert [r.status for r in results.values()] == [Status.INSUFFICIENT_DATA] * 3


# --- cost_per_1k ----------------------------------------------------------------------


def test_cost_mixes_the_cost_field_and_the_price_table() -> None:
    frame = usage(
        cost=[1.0, None, None, NAN],
        cpu_seconds=[100.0, 3600.0, 1800.0, 0.0],
        gpu_seconds=[None, 1800.0, None, None],
        memory_mb=[1024.0, 2048.0, None, 1024.0],
    )
    (result,) = run("cost_per_1k", frame, 200, prices=PRICES, window_hours=2.0).values()
    # direct 1.0; sample 2: cpu 3.6 + gpu 3.6 + memory 2 GB * 2 h / 3 samples * 0.5 = 2/3;
    # sample 3: cpu 1.8; sample 4: memory 1 GB * 2 h / 3 * 0.5 = 1/3. Total 11.0.
    assert result.value == pytest.approx(11.0 / 200 * 1000)
    assert (result.n, result.status) == (200, Status.OK)
    assert result.detail == "cost field: 1 samples, prices: 3 samples"


def test_cost_from_the_cost_field_only_needs_no_prices() -> None:
    (result,) = run("cost_per_1k", usage(cost=[0.5, 1.5]), 4).values()
    assert result.value == pytest.approx(500.0)


def test_memory_cost_matches_resource_per_1k() -> None:
    frame = usage(memory_mb=[512.0, 1024.0, 768.0])
    options: dict[str, Any] = {"prices": {"gb_hour": 2.0}, "window_hours": 3.0}
    (cost,) = run("cost_per_1k", frame, 50, **options).values()
    memory = run("resource_per_1k", frame, 50, **options)["memory_gb_hours"]
    assert memory.value is not None
    assert cost.value == pytest.approx(memory.value * 2.0)


def test_unpriced_usage_is_reported() -> None:
    frame = usage(cpu_seconds=[3600.0], gpu_seconds=[3600.0])
    (result,) = run("cost_per_1k", frame, 1000, prices={"cpu_hour": 2.0, "gpu_hour": 0.0}).values()
    assert result.value == pytest.approx(2.0)
    assert result.detail.endswith("unpriced usage counted as 0: gpu_hour")


def test_cost_without_prices_or_cost_field_is_not_applicable() -> None:
    frame = usage(cpu_seconds=[1.0])
    zero = {"cpu_hour": 0.0, "gpu_hour": 0.0, "gb_hour": 0.0}  # the runner's default
    cases: list[dict[str, Any]] = [{}, {"prices": zero}]
    for options in cases:
        (result,) = run("cost_per_1k", frame, **options).values()
        assert result.status is Status.NOT_APPLICABLE


@pytest.mark.parametrize(
    "options",
    [
        {"prices": {"cpu_hour": -1.0}},
        {"prices": {"cpu_hour": "cheap"}},
        {"prices": {"tpu_hour": 1.0}},
        {"prices": [1.0]},
        {"prices": {"gb_hour": 1.0}},  # memory to price but no window_hours
    ],
)
def test_cost_with_malformed_options_is_an_error(options: dict[str, Any]) -> None:
    (result,) = run("cost_per_1k", usage(memory_mb=[100.0]), **options).values()
    assert result.status is Status.ERROR


def test_cost_insufficient_data() -> None:
    for frame, predictions in ((None, 10), (usage(cost=[]), 10), (usage(cost=[1.0]), 0)):
        (result,) = run("cost_per_1k", frame, predictions, prices=PRICES).values()
        assert result.status is Status.INSUFFICIENT_DATA
    (small,) = run("cost_per_1k", usage(cost=[1.0]), 5, min_samples=6).values()
    assert (small.status, small.n) == (Status.INSUFFICIENT_DATA, 5)
