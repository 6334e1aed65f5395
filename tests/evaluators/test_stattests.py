"""Each drift statistic equals scipy's and evidently's own stattest to 1e-9 on seeded data."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from evaluators import stattests as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from evidently.legacy.calculations.stattests import (
        chi_stat_test,
        jensenshannon_stat_test,
        ks_stat_test,
        psi_stat_test,
        wasserstein_stat_test,
        z_stat_test,
    )
    from evidently.legacy.core import ColumnType

Arrays = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def close(ours: float | None, theirs: float) -> bool:
    assert ours is not None
    return math.isclose(ours, float(theirs), rel_tol=1e-9, abs_tol=1e-9)


def evidently_score(test: Any, ref: Any, cur: Any, kind: ColumnType) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(test(pd.Series(ref), pd.Series(cur), kind, None).drift_score)


# --- numeric ----------------------------------------------------------------------------------


def _normal(n_ref: int, n_cur: int, shift: float, scale: float = 1.0, seed: int = 0) -> Arrays:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, n_ref), rng.normal(shift, scale, n_cur)


def _rounded(seed: int) -> Arrays:
    ref, cur = _normal(3000, 12000, 0.05, seed=seed)
    return np.round(ref, 1), np.round(cur, 1)  # heavy ties across both samples


def _integers(seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 60, 4000), rng.integers(3, 70, 11000)


def _skewed(seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    return rng.lognormal(0, 1, 2500), rng.lognormal(0.2, 1.2, 30000)


NUMERIC: dict[str, Callable[[], Arrays]] = {
    "small-same": lambda: _normal(300, 500, 0.0, seed=1),
    "small-shifted": lambda: _normal(400, 700, 0.4, seed=2),
    "large-same": lambda: _normal(5000, 40000, 0.0, seed=3),
    "large-shifted": lambda: _normal(5000, 40000, 0.05, 1.1, seed=4),
    "ties": lambda: _rounded(5),
    "integers": lambda: _integers(6),
    "skewed": lambda: _skewed(7),
}


@pytest.fixture(params=sorted(NUMERIC))
def numeric(request: pytest.FixtureRequest) -> Arrays:
    return NUMERIC[request.param]()


def test_ks_equals_scipy_auto_and_evidently(numeric: Arrays) -> None:
    ref, cur = numeric
    statistic, p_value = st.ks(st.ReferenceProfile(ref), cur)
    expected = stats.ks_2samp(ref, cur)
    assert close(statistic, expected.statistic)
    assert close(p_value, expected.pvalue)
    assert close(p_value, evidently_score(ks_stat_test, ref, cur, ColumnType.Numerical))


def test_ks_asymptotic_equals_scipy_asymp(numeric: Arrays) -> None:
    ref, cur = numeric
    statistic, p_value = st.ks(ref, cur, mode="asymp")
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert statistic == expected.statistic  # the statistic is exact, not just close
    assert close(p_value, expected.pvalue)


def test_ks_large_sample_takes_the_merged_path() -> None:
    ref, cur = _normal(12000, 30000, 0.03, seed=8)
    statistic, p_value = st.ks(ref, cur)
    expected = stats.ks_2samp(ref, cur)
    assert statistic == expected.statistic
    assert close(p_value, expected.pvalue)
    assert 1e-6 < expected.pvalue < 0.5  # a p-value that is not trivially 0 or 1


def test_drift_ks_p_value_is_exact_for_small_samples_and_conservative_from_en_500() -> None:
    """The drift check's KS p-value (``ks_wasserstein``) against scipy's exact one: equal
    below the effective size ``KS_LIMIT_MIN_EN``, never smaller and within 15 % above."""
    rng = np.random.default_rng(21)
    excess = []
    for n_ref, n_cur in ((5000, 1000), (5000, 100), (2000, 400)):
        en = n_ref * n_cur / (n_ref + n_cur)
        for _ in range(40):
            ref = rng.normal(size=n_ref)
            cur = rng.normal(rng.uniform(0.0, 0.3), 1.0, size=n_cur)
            d, p, _ = st.ks_wasserstein(st.ReferenceProfile(ref), cur)
            exact = stats.ks_2samp(ref, cur, method="exact")
            assert d == pytest.approx(exact.statistic, rel=1e-12)
            if en < st.KS_LIMIT_MIN_EN:
                assert p == pytest.approx(exact.pvalue, rel=1e-9)
            elif exact.pvalue > 1e-12:
                assert p == pytest.approx(stats.kstwobign.sf(d * math.sqrt(en)), rel=1e-12)
                excess.append(p / exact.pvalue - 1)
    assert len(excess) >= 35  # the others' exact p-values are below 1e-12
    assert min(excess) >= 0 and max(excess) < 0.15


def test_wasserstein_equals_scipy_over_std_and_evidently(numeric: Arrays) -> None:
    ref, cur = numeric
    value, p_value = st.wasserstein(st.ReferenceProfile(ref), cur)
    assert p_value is None
    assert close(value, stats.wasserstein_distance(ref, cur) / np.std(ref))
    assert close(value, evidently_score(wasserstein_stat_test, ref, cur, ColumnType.Numerical))


def test_psi_equals_evidently(numeric: Arrays) -> None:
    ref, cur = numeric
    value, _ = st.psi(st.ReferenceProfile(ref), cur)
    assert close(value, evidently_score(psi_stat_test, ref, cur, ColumnType.Numerical))


def test_jensenshannon_equals_scipy_on_sturges_bins_and_evidently(numeric: Arrays) -> None:
    ref, cur = numeric
    value, _ = st.jensenshannon(st.ReferenceProfile(ref), cur)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    ref_hist = np.histogram(ref, edges)[0] / ref.size
    cur_hist = np.histogram(cur, edges)[0] / cur.size
    assert close(value, distance.jensenshannon(ref_hist, cur_hist))
    expected = evidently_score(jensenshannon_stat_test, ref, cur, ColumnType.Numerical)
    assert close(value, expected)


@pytest.mark.parametrize("test", [psi_stat_test, jensenshannon_stat_test])
def test_few_valued_numeric_is_counted_per_value_as_evidently(test: Any) -> None:
    rng = np.random.default_rng(9)
    ref, cur = rng.integers(0, 6, 2000).astype(float), rng.integers(0, 8, 3000).astype(float)
    ours = st.psi(ref, cur) if test is psi_stat_test else st.jensenshannon(ref, cur)
    assert close(ours[0], evidently_score(test, ref, cur, ColumnType.Numerical))


def test_constant_reference_uses_evidentlys_std_floor() -> None:
    ref, cur = np.full(500, 3.0), np.random.default_rng(10).normal(3, 0.01, 800)
    value, _ = st.wasserstein(ref, cur)
    assert close(value, stats.wasserstein_distance(ref, cur) / 0.001)
    assert close(value, evidently_score(wasserstein_stat_test, ref, cur, ColumnType.Numerical))


@pytest.mark.parametrize(
    ("values", "integer"),
    [
        (np.random.default_rng(11).normal(0, 1, 5000), False),
        (np.random.default_rng(12).integers(0, 21, 2**20 + 5), True),  # width < 1 → 1
        (np.random.default_rng(13).integers(-500, 500, 3000), True),
    ],
)
def test_sturges_edges_equal_numpys(values: np.ndarray[Any, Any], integer: bool) -> None:
    edges = st.sturges_edges(values.min(), values.max(), values.size, integer=integer)
    np.testing.assert_array_equal(edges, np.histogram_bin_edges(values, bins="sturges"))


def test_fixed_bins_change_the_binning() -> None:
    ref, cur = _normal(3000, 9000, 0.1, seed=14)
    edges = np.linspace(min(ref.min(), cur.min()), max(ref.max(), cur.max()), 11)
    ref_hist = np.histogram(ref, edges)[0] / ref.size
    cur_hist = np.histogram(cur, edges)[0] / cur.size
    value, _ = st.jensenshannon(ref, cur, n_bins=10)
    assert close(value, distance.jensenshannon(ref_hist, cur_hist))


# --- categorical ------------------------------------------------------------------------------


def _choice(values: str, n: int, p: list[float] | None, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).choice(np.array(list(values), dtype=object), n, p=p)


CATEGORICAL: dict[str, Callable[[], Arrays]] = {
    "same": lambda: (_choice("abcde", 3000, None, 20), _choice("abcde", 9000, None, 21)),
    "shifted": lambda: (
        _choice("abcde", 3000, [0.3, 0.3, 0.2, 0.1, 0.1], 22),
        _choice("abcde", 9000, [0.28, 0.3, 0.22, 0.1, 0.1], 23),
    ),
    "unseen-in-reference": lambda: (
        _choice("abcd", 2000, None, 24),
        _choice("abcdef", 5000, [0.2, 0.2, 0.2, 0.2, 0.1, 0.1], 25),
    ),
    "missing-from-current": lambda: (
        _choice("abcdef", 2000, None, 26),
        _choice("abc", 1500, None, 27),
    ),
    "rare": lambda: (
        _choice("abc", 50000, [0.99995, 0.00003, 0.00002], 28),
        _choice("abc", 60000, [0.9999, 0.0001, 0.0], 29),
    ),
}


@pytest.fixture(params=sorted(CATEGORICAL))
def categorical(request: pytest.FixtureRequest) -> Arrays:
    return CATEGORICAL[request.param]()


def _scipy_chisquare(ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> Any:
    keys = sorted(set(ref) | set(cur))
    f_obs = [int(np.sum(cur == k)) for k in keys]
    f_exp = [int(np.sum(ref == k)) * cur.size / ref.size for k in keys]
    with np.errstate(divide="ignore"):
        return stats.chisquare(f_obs, f_exp)


def test_chi_square_equals_scipy_and_evidently(categorical: Arrays) -> None:
    ref, cur = categorical
    statistic, p_value = st.chi_square(st.ReferenceProfile(ref), cur)
    expected = _scipy_chisquare(ref, cur)
    if math.isinf(expected.statistic):  # a value unseen in the reference: certain drift
        assert statistic == math.inf
    else:
        assert close(statistic, expected.statistic)
    assert close(p_value, expected.pvalue)
    assert close(p_value, evidently_score(chi_stat_test, ref, cur, ColumnType.Categorical))


@pytest.mark.parametrize("test", [psi_stat_test, jensenshannon_stat_test, z_stat_test])
def test_counted_tests_equal_evidently(categorical: Arrays, test: Any) -> None:
    ref, cur = categorical
    ours = {
        psi_stat_test: st.psi,
        jensenshannon_stat_test: st.jensenshannon,
        z_stat_test: st.z_test,
    }
    statistic, p_value = ours[test](st.ReferenceProfile(ref), cur)
    score = p_value if test is z_stat_test else statistic
    assert close(score, evidently_score(test, ref, cur, ColumnType.Categorical))


def test_shifted_categories_give_a_p_value_between_0_and_1() -> None:
    _, p_value = st.chi_square(*CATEGORICAL["shifted"]())
    assert p_value is not None and 1e-6 < p_value < 0.5


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        (_choice("ny", 800, [0.7, 0.3], 30), _choice("ny", 900, [0.6, 0.4], 31)),
        (_choice("ny", 800, [0.7, 0.3], 32), _choice("y", 900, None, 33)),
        (np.array([True, False] * 300), np.array([True] * 350 + [False] * 250)),
    ],
)
def test_z_test_equals_evidently(ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> None:
    z, p_value = st.z_test(ref, cur)
    assert close(p_value, evidently_score(z_stat_test, ref, cur, ColumnType.Categorical))
    assert close(p_value, 2 * stats.norm.sf(abs(z)))


def test_z_test_of_one_shared_value_is_no_drift() -> None:
    same = np.array(["a"] * 50, dtype=object)
    assert st.z_test(same, same[:20]) == (0.0, 1.0)
    assert close(1.0, evidently_score(z_stat_test, same, same[:20], ColumnType.Categorical))


def test_profile_is_reusable_across_windows() -> None:
    ref, _ = _normal(2000, 1, 0.0, seed=40)
    profile = st.ReferenceProfile(ref)
    for seed, shift in ((41, 0.0), (42, 0.2)):
        cur = np.random.default_rng(seed).normal(shift, 1, 20000)
        assert st.ks(profile, cur) == st.ks(ref, cur)
        assert st.wasserstein(profile, cur) == st.wasserstein(ref, cur)
        assert st.psi(profile, cur) == st.psi(ref, cur)
