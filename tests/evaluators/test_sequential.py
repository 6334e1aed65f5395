"""The always-valid sequence: its boundary against the mSPRT's mixture likelihood ratio
integrated with scipy, and its error rate under hourly looks by seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from bench.sequential import first_sequential, first_window, hourly_cells
from modelwatch.sequential import paired, rho_squared, two_sample


def _mixture_ratio(mean: float, t: float, sigma: float, tau: float) -> float:
    """Johari et al.'s Lambda_t: the N(0, tau^2) mixture of normal likelihood ratios."""

    def integrand(theta: float) -> float:
        log_ratio = t * (theta * mean - theta * theta / 2.0) / sigma**2
        return math.exp(log_ratio) * float(stats.norm.pdf(theta, 0.0, tau))

    value, _ = integrate.quad(integrand, -20 * tau, 20 * tau, points=[0.0, mean], limit=200)
    return float(value)


@pytest.mark.parametrize(("t", "sigma", "alpha"), [(500, 0.6, 0.05), (20_000, 1.3, 0.01)])
def test_the_boundary_is_where_the_mixture_ratio_reaches_one_over_alpha(
    t: int, sigma: float, alpha: float
) -> None:
    tau = sigma * math.sqrt(rho_squared(alpha))
    edge = optimize.brentq(
        lambda m: _mixture_ratio(m, t, sigma, tau) - 1.0 / alpha, 1e-9, 10 * sigma / math.sqrt(t)
    )
    rng = np.random.default_rng(7)
    x = rng.normal(2 * sigma / math.sqrt(t), sigma, t)
    seq = paired(t, x.sum(), (x * x).sum(), alpha)
    sd = float(np.std(x, ddof=1))
    scaled = edge * sd / sigma  # the boundary is linear in sigma
    assert float(seq.high - seq.estimate) == pytest.approx(scaled, rel=1e-6)
    p = 1.0 / _mixture_ratio(float(x.mean()), t, sd, sd * math.sqrt(rho_squared(alpha)))
    assert float(seq.p_value) == pytest.approx(min(1.0, p), rel=1e-5)


def test_two_samples_use_the_variance_of_the_difference() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 400), rng.normal(0.3, 2.0, 900)
    seq = two_sample((a.size, a.sum(), (a * a).sum()), (b.size, b.sum(), (b * b).sum()))
    se = math.sqrt(np.var(a, ddof=1) / a.size + np.var(b, ddof=1) / b.size)
    t = a.size + b.size
    same = paired(t, 0.0, (t - 1) * t * se * se)  # a paired sequence of that sigma
    assert float(seq.estimate) == pytest.approx(b.mean() - a.mean())
    assert float(seq.high - seq.estimate) == pytest.approx(float(same.high), rel=1e-9)


def test_fewer_than_two_samples_give_no_interval() -> None:
    seq = paired(np.array([0, 1, 2]), np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    assert np.isnan(seq.low[:2]).all() and np.isfinite(seq.low[2])


def test_hourly_looks_keep_false_promotions_at_alpha_where_per_window_tests_do_not() -> None:
    """200 runs of 30 days, 1,000 pairs an hour, looked at hourly (the full 1,000 runs:
    bench/sequential.py)."""
    b, c = hourly_cells(200, 720, 0.0, seed=11)
    sequential = float(np.mean(first_sequential(b, c) > 0))
    window = float(np.mean(first_window(b, c) > 0))
    assert sequential <= 0.05
    assert window > 0.5
    b, c = hourly_cells(200, 720, 0.02, seed=12)
    hours = first_sequential(b, c)
    assert np.mean(hours > 0) > 0.95
    assert 1 < np.median(hours[hours > 0]) < 48
