"""Regression metrics pinned to scikit-learn and numpy on seeded data, and bad data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn import metrics as skm

from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from modelwatch.domain import ModelSpec

FEATURES = [{"name": "x", "type": "numeric"}]
SPEC = ModelSpec.model_validate({"name": "r", "task": "regression", "features": FEATURES})
BINARY = ModelSpec.model_validate({"name": "b", "task": "binary", "features": FEATURES})
KEYS = ["mae", "rmse", "mape", "r2", "error_quantiles"]
TOL = 1e-9


def frame(n: int = 2_000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(10.0, 3.0, n)
    return pl.DataFrame({"label": signal + rng.normal(0.0, 1.0, n), "prediction": signal})


def run(key: str, window: pl.DataFrame, **kw: Any) -> list[MetricResult]:
    return get_metric(key).compute(EvalContext(spec=SPEC, window=window, **kw))


def one(key: str, window: pl.DataFrame, **kw: Any) -> MetricResult:
    return run(key, window, **kw)[0]


def _arrays(window: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return window["label"].to_numpy(), window["prediction"].to_numpy()


def _ok_interval(r: MetricResult) -> None:
    assert r.status is Status.OK, r
    assert r.value is not None and r.ci_low is not None and r.ci_high is not None, r
    assert r.ci_low <= r.value <= r.ci_high, r


def test_every_key_is_registered_as_regression() -> None:
    assert set(KEYS) <= set(metric_keys(Family.REGRESSION))


def test_pinned_to_sklearn() -> None:
    window = frame()
    y, p = _arrays(window)
    expected = {
        "mae": skm.mean_absolute_error(y, p),
        "rmse": skm.root_mean_squared_error(y, p),
        "mape": skm.mean_absolute_percentage_error(y, p),
        "r2": skm.r2_score(y, p),
    }
    for key, value in expected.items():
        r = one(key, window)
        assert r.value == pytest.approx(value, abs=TOL), key
        assert r.n == y.size and r.label is None
        _ok_interval(r)


def test_error_quantiles() -> None:
    window = frame()
    y, p = _arrays(window)
    results = run("error_quantiles", window)
    assert [r.label for r in results] == ["p50", "p90", "p95", "p99"]
    expected = np.quantile(np.abs(p - y), [0.5, 0.9, 0.95, 0.99])
    for r, value in zip(results, expected, strict=True):
        assert r.value == pytest.approx(value, abs=TOL)
        _ok_interval(r)


def test_analytic_intervals() -> None:
    window = frame()
    y, p = _arrays(window)
    z = stats.norm.ppf(0.975)
    absolute = np.abs(p - y)
    mae = one("mae", window)
    half = z * absolute.std(ddof=1) / math.sqrt(y.size)
    assert (mae.ci_low, mae.ci_high) == pytest.approx(
        (absolute.mean() - half, absolute.mean() + half)
    )
    squared = (p - y) ** 2
    rmse = one("rmse", window)
    se = squared.std(ddof=1) / math.sqrt(y.size) / (2 * math.sqrt(squared.mean()))
    assert rmse.ci_low is not None and rmse.ci_high is not None
    assert rmse.ci_high - rmse.ci_low == pytest.approx(2 * z * se)
    assert rmse.ci_low < 1.0 < rmse.ci_high  # the noise's true standard deviation


def test_r2_bootstrap_covers_the_population_value() -> None:
    r = one("r2", frame(20_000, seed=4), options={"bootstrap": 300})
    truth = 1.0 - 1.0 / (9.0 + 1.0)  # 1 - var(noise) / var(label)
    assert r.ci_low is not None and r.ci_high is not None
    assert r.ci_low < truth < r.ci_high
    assert r.ci_high - r.ci_low < 0.01


def test_mape_skips_zero_labels() -> None:
    window = frame(500).with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(0.0).otherwise("label").alias("label")
    )
    r = one("mape", window)
    kept = window.slice(5)
    expected = skm.mean_absolute_percentage_error(*_arrays(kept))
    assert r.value == pytest.approx(expected, abs=TOL) and r.n == 495
    assert "5 rows labelled 0 skipped" in r.detail
    zeros = one("mape", window.with_columns(pl.lit(0.0).alias("label")), min_samples=10)
    assert zeros.status is Status.INSUFFICIENT_DATA and zeros.value is None
    assert "500 rows labelled 0 skipped" in zeros.detail


def test_r2_with_constant_labels_is_not_applicable() -> None:
    r = one("r2", frame(100).with_columns(pl.lit(3.0).alias("label")), options={"threshold": 0.5})
    assert (r.status, r.value) == (Status.NOT_APPLICABLE, None)
    assert "constant" in r.detail


def test_non_finite_rows_are_left_out_and_counted() -> None:
    window = frame(300)
    bad_label = pl.Series([np.nan, np.inf, None], dtype=pl.Float64)
    bad_pred = pl.Series([1.0, 2.0, 3.0, -np.inf, None], dtype=pl.Float64)
    dirty = window.with_columns(
        pl.concat([bad_label, window["label"].slice(3)]).alias("label"),
        pl.concat([bad_pred, window["prediction"].slice(5)]).alias("prediction"),
    )
    clean = window.slice(5)
    for key in KEYS:
        r, ref = one(key, dirty), one(key, clean)
        assert r.n == 295 and r.value == pytest.approx(ref.value, abs=TOL), key
        assert "4 rows with a missing or non-finite label or prediction left out" in r.detail


@pytest.mark.parametrize("key", KEYS)
def test_empty_small_unlabelled_and_wrong_task(key: str) -> None:
    window = frame(50)
    [empty] = run(key, window.head(0), options={"threshold": 0.0})
    assert (empty.status, empty.value) == (Status.INSUFFICIENT_DATA, None)
    [small] = run(key, window.head(10), min_samples=30, options={"threshold": 0.0})
    assert (small.status, small.n) == (Status.INSUFFICIENT_DATA, 10)
    [nulls] = run(key, window.with_columns(pl.lit(None, pl.Float64).alias("label")))
    assert nulls.status is Status.NO_LABELS
    assert run(key, window.drop("label"))[0].status is Status.NO_LABELS
    [wrong] = get_metric(key).compute(EvalContext(spec=BINARY, window=window))
    assert wrong.status is Status.NOT_APPLICABLE and "binary" in wrong.detail


def test_all_rows_non_finite_is_insufficient() -> None:
    window = frame(20).with_columns(pl.lit(np.nan).alias("prediction"))
    r = one("mae", window, min_samples=0)
    assert (r.status, r.n) == (Status.INSUFFICIENT_DATA, 0)


@pytest.mark.parametrize(
    ("key", "threshold", "status"),
    [
        ("mae", 0.5, Status.BREACH),
        ("mae", 2.0, Status.OK),
        ("rmse", 0.5, Status.BREACH),
        ("mape", 0.5, Status.OK),
        ("r2", 0.95, Status.BREACH),
        ("r2", 0.5, Status.OK),
    ],
)
def test_thresholds(key: str, threshold: float, status: Status) -> None:
    r = one(key, frame(), options={"threshold": threshold})
    assert (r.status, r.threshold) == (status, threshold)


def test_threshold_on_error_quantiles_applies_to_each() -> None:
    results = run("error_quantiles", frame(), options={"threshold": 1.8})
    assert [r.status for r in results] == [Status.OK, Status.OK, Status.BREACH, Status.BREACH]
