"""Confidence intervals: against scipy and the textbook formulas, and coverage sanity."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from evaluators import intervals
from evaluators.intervals import (
    IntervalSettings,
    bootstrap_interval,
    bounds,
    delong,
    group_sums,
    macro_auc_variance,
    mean_interval,
    quantile_interval,
    rmse_interval,
    wilson,
)

Z95 = stats.norm.ppf(0.975)


@pytest.mark.parametrize(("x", "n"), [(0, 10), (3, 10), (10, 10), (47, 200), (1, 1)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_equals_scipy(x: int, n: int, confidence: float) -> None:
    ref = stats.binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson(x, n, confidence)
    assert float(low) == pytest.approx(ref.low, abs=1e-12)
    assert float(high) == pytest.approx(ref.high, abs=1e-12)


def test_wilson_is_elementwise_and_undefined_without_trials() -> None:
    low, high = wilson(np.array([0, 5, 0]), np.array([0, 10, 4]), 0.95)
    assert math.isnan(low[0]) and math.isnan(high[0])
    assert low[1] < 0.5 < high[1]
    assert low[2] == 0.0 and high[2] > 0.0


def test_wilson_covers_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    p, n = 0.3, 60
    low, high = wilson(rng.binomial(n, p, 20_000), n, 0.95)
    coverage = np.mean((low <= p) & (p <= high))
    assert 0.93 < coverage < 0.97


def test_mean_interval_is_the_normal_formula() -> None:
    values = np.random.default_rng(1).exponential(2.0, 500)
    half = Z95 * values.std(ddof=1) / math.sqrt(values.size)
    low, high = mean_interval(values, 0.95)
    assert low == pytest.approx(values.mean() - half, rel=1e-12)
    assert high == pytest.approx(values.mean() + half, rel=1e-12)
    assert all(math.isnan(b) for b in mean_interval(values[:1], 0.95))
    assert mean_interval(np.full(3, 0.1), 0.95, lo=0.0) == pytest.approx((0.1, 0.1))


def test_rmse_interval_is_the_delta_method() -> None:
    errors = np.random.default_rng(2).normal(0.0, 3.0, 2_000)
    squared = errors**2
    rmse = math.sqrt(squared.mean())
    se = squared.std(ddof=1) / math.sqrt(squared.size) / (2 * rmse)
    assert rmse_interval(squared, 0.95) == pytest.approx((rmse - Z95 * se, rmse + Z95 * se))
    assert rmse_interval(np.zeros(5), 0.95) == (0.0, 0.0)
    assert 2.9 < rmse - Z95 * se < 3.0 < rmse + Z95 * se < 3.1


def test_quantile_interval_ranks_come_from_the_binomial() -> None:
    ordered = np.arange(1.0, 101.0)  # X(i) = i
    low, high = quantile_interval(ordered, np.array([0.5, 0.9]), 0.95)
    for q, lo, hi in zip([0.5, 0.9], low, high, strict=True):
        assert lo == stats.binom.ppf(0.025, 100, q)
        assert hi == stats.binom.ppf(0.975, 100, q) + 1
        coverage = stats.binom.cdf(hi - 1, 100, q) - stats.binom.cdf(lo - 1, 100, q)
        assert coverage >= 0.95


def test_quantile_interval_of_nothing_is_undefined() -> None:
    low, high = quantile_interval(np.empty(0), np.array([0.5, 0.9]), 0.95)
    assert np.isnan(low).all() and np.isnan(high).all()


def test_quantile_interval_covers_the_true_quantile() -> None:
    rng = np.random.default_rng(3)
    samples = np.sort(rng.exponential(1.0, (2_000, 150)), axis=1)
    truth = stats.expon.ppf(0.9)
    hits = 0
    for row in samples:  # over simulated samples, not rows
        low, high = quantile_interval(row, np.array([0.9]), 0.95)
        hits += int(low[0] <= truth <= high[0])
    assert hits / len(samples) > 0.94


def _delong_by_pairs(positive: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """DeLong et al. (1988) straight from the pairwise kernel, O(m·n)."""
    x, y = scores[positive], scores[~positive]
    kernel = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return float(kernel.mean()), v10.var(ddof=1) / x.size + v01.var(ddof=1) / y.size


def test_delong_matches_the_pairwise_definition_and_sklearn() -> None:
    rng = np.random.default_rng(4)
    positive = rng.random(300) < 0.4
    scores = np.round(rng.normal(positive * 0.8, 1.0), 1)  # many ties
    fit = delong(positive, scores)
    assert fit is not None
    auc, variance = _delong_by_pairs(positive, scores)
    assert fit.auc == pytest.approx(auc, abs=1e-12)
    assert fit.auc == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert fit.variance == pytest.approx(variance, rel=1e-10)
    assert fit.influence.sum() == pytest.approx(0.0, abs=1e-12)


def test_delong_is_none_for_one_class() -> None:
    assert delong(np.ones(5, dtype=bool), np.arange(5.0)) is None
    assert delong(np.zeros(5, dtype=bool), np.arange(5.0)) is None


def _bootstrap_variance(
    statistic: Callable[[np.ndarray], float], n: int, seed: int = 0, b: int = 400
) -> float:
    rng = np.random.default_rng(seed)
    draws = [statistic(rng.integers(0, n, n)) for _ in range(b)]
    return float(np.var(draws, ddof=1))


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    fit = delong(positive, scores)  # its AUC is pinned to sklearn's above
    assert fit is not None
    return fit.auc


def test_delong_variance_agrees_with_the_bootstrap() -> None:
    rng = np.random.default_rng(5)
    positive = rng.random(2_000) < 0.3
    scores = rng.normal(positive * 1.0, 1.0)
    fit = delong(positive, scores)
    assert fit is not None
    boot = _bootstrap_variance(lambda i: _auc(positive[i], scores[i]), positive.size)
    assert fit.variance == pytest.approx(boot, rel=0.2)


def test_macro_variance_agrees_with_the_bootstrap() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 1_500)
    proba = rng.dirichlet(np.ones(3), y.size) + 0.6 * np.eye(3)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    fits = [delong(y == k, proba[:, k]) for k in range(3)]
    variance = macro_auc_variance([f for f in fits if f is not None])

    def macro(i: np.ndarray) -> float:
        return float(np.mean([_auc(y[i] == k, proba[i, k]) for k in range(3)]))

    assert variance == pytest.approx(_bootstrap_variance(macro, y.size), rel=0.2)


def test_bootstrap_of_a_mean_agrees_with_the_normal_interval() -> None:
    values = np.random.default_rng(7).exponential(1.0, 5_000)

    def mean(weights: np.ndarray) -> np.ndarray:
        return np.asarray(weights @ values / weights.sum(axis=1))

    settings = IntervalSettings(0.95, 1_000, 3)
    low, high = bootstrap_interval(mean, values.size, settings)
    ref_low, ref_high = mean_interval(values, 0.95)
    width = ref_high - ref_low
    assert low[0] == pytest.approx(ref_low, abs=0.1 * width)
    assert high[0] == pytest.approx(ref_high, abs=0.1 * width)
    assert low[0] <= 1.0 <= high[0]  # the true mean
    again = bootstrap_interval(mean, values.size, settings)
    assert np.array_equal(again[0], low) and np.array_equal(again[1], high)


def test_bootstrap_blocks_bound_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(8).normal(0.0, 1.0, 1_000)
    shapes: list[tuple[int, ...]] = []

    def mean(weights: np.ndarray) -> np.ndarray:
        shapes.append(weights.shape)
        return np.asarray(weights @ values / weights.sum(axis=1))

    monkeypatch.setattr(intervals, "MAX_BLOCK_ENTRIES", 5_000)
    low, high = bootstrap_interval(mean, values.size, IntervalSettings(0.95, 200, 0))
    assert len(shapes) == 40 and all(s == (5, 1_000) for s in shapes)
    assert low[0] < 0.0 < high[0]


def test_bootstrap_over_cells_and_switched_off() -> None:
    counts = np.array([30, 70])

    def share(weights: np.ndarray) -> np.ndarray:
        return np.asarray(weights[:, 1] / weights.sum(axis=1))

    low, high = bootstrap_interval(share, counts, IntervalSettings(0.95, 2_000, 0))
    ref = wilson(70, 100, 0.95)
    assert low[0] == pytest.approx(float(ref[0]), abs=0.03)
    assert high[0] == pytest.approx(float(ref[1]), abs=0.03)
    off = bootstrap_interval(share, counts, IntervalSettings(0.95, 0, 0))
    assert np.isnan(off[0]).all() and np.isnan(off[1]).all()


def test_group_sums() -> None:
    weights = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])
    codes = np.array([0, 1, 0])
    assert group_sums(weights, codes, 2).tolist() == [[4.0, 2.0], [1.0, 1.0]]
    values = np.array([1.0, 10.0, 100.0])
    assert group_sums(weights, codes, 2, values).tolist() == [[301.0, 20.0], [100.0, 10.0]]


def test_settings_from_options() -> None:
    assert IntervalSettings.from_options({}) == IntervalSettings(0.95, 200, 0)
    assert IntervalSettings.from_options({"confidence": 0.9, "bootstrap": 0, "seed": 4}) == (
        IntervalSettings(0.9, 0, 4)
    )
    for bad in ({"confidence": 1.0}, {"confidence": "high"}, {"bootstrap": 5}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IntervalSettings.from_options(bad)


def test_bounds_turn_nan_into_none() -> None:
    assert bounds(math.nan, 1.0) == {"ci_low": None, "ci_high": 1.0}
    assert bounds(np.float64(0.25), np.array(0.5)) == {"ci_low": 0.25, "ci_high": 0.5}


def test_z_score_equals_scipy_norm_ppf() -> None:
    confidences = np.r_[np.linspace(0.01, 0.99, 99), 0.999, 0.9999, 1e-9, 1 - 1e-9]
    for confidence in confidences:
        expected = stats.norm.ppf(0.5 + confidence / 2.0)
        assert intervals.z_score(float(confidence)) == pytest.approx(expected, abs=1e-12)


def test_poisson_table_equals_scipy_poisson_ppf() -> None:
    expected = stats.poisson.ppf((np.arange(2**16) + 0.5) / 2**16, 1.0)
    np.testing.assert_array_equal(intervals._POISSON_1, expected)
