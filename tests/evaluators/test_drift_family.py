"""The drift verdict over a run's columns: Holm/Bonferroni/BH adjusted p-values against
statsmodels' and scipy's, the effect floors, and the combined statistics behind them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial import distance

from evaluators import stattests as st
from evaluators.base import EvalContext, MetricResult, Status, get_metric
from evaluators.metrics.drift_family import adjust
from modelwatch.domain import ModelSpec

P_VALUES = [0.01, 0.04, 0.03, 0.005, 0.5, 0.04, 0.2, 1e-6]
# statsmodels 0.15 multipletests(P_VALUES, method=...)[1]
GOLDEN = {
    "holm": [0.06, 0.16, 0.15, 0.035, 0.5, 0.16, 0.4, 8e-06],
    "bonferroni": [0.08, 0.32, 0.24, 0.04, 1.0, 0.32, 1.0, 8e-06],
    "bh": [0.08 / 3, 0.16 / 3, 0.16 / 3, 0.02, 0.5, 0.16 / 3, 1.6 / 7, 8e-06],
}
SPEC = ModelSpec.model_validate(
    {
        "name": "m",
        "task": "binary",
        "features": [
            *({"name": f"x{i}", "type": "numeric"} for i in range(4)),
            {"name": "plan", "type": "categorical"},
        ],
    }
)


@pytest.mark.parametrize("how", sorted(GOLDEN))
def test_adjusted_p_values_are_statsmodels(how: str) -> None:
    assert adjust(P_VALUES, how) == pytest.approx(GOLDEN[how], rel=1e-12)
    assert adjust(P_VALUES, "none").tolist() == P_VALUES
    assert adjust([], how).size == 0


def test_benjamini_hochberg_is_scipys_false_discovery_control() -> None:
    p = np.random.default_rng(3).uniform(size=40) ** 3
    assert adjust(p, "bh") == pytest.approx(stats.false_discovery_control(p), rel=1e-12)


def test_adjusted_p_values_are_statsmodels_when_installed() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(4).uniform(size=60) ** 4
    for ours, theirs in (("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh")):
        assert adjust(p, ours) == pytest.approx(multitest.multipletests(p, method=theirs)[1])


def test_ks_wasserstein_and_chi_square_tv_equal_the_separate_statistics() -> None:
    rng = np.random.default_rng(5)
    for n_ref, n_cur, digits in ((800, 600, 9), (30_000, 20_000, 9), (30_000, 20_000, 1)):
        ref = np.round(rng.normal(size=n_ref), digits)  # 1 digit: many ties
        cur = np.round(rng.normal(0.1, 1.2, size=n_cur), digits)
        d, p, w = st.ks_wasserstein(ref, cur)
        scipy_d, scipy_p = st.ks(ref, cur)
        assert d == scipy_d and p == pytest.approx(scipy_p, rel=0.01)
        if n_cur > st.EXACT_KS_MAX_N:  # Kolmogorov's limit: kstwo.sf costs O(n) here
            en = n_ref * n_cur / (n_ref + n_cur)
            assert p == pytest.approx(stats.kstwobign.sf(d * np.sqrt(en)), rel=1e-12)
        assert w == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)
    ref_c = pl.Series(rng.choice(list("abcd"), 5000, p=[0.1, 0.2, 0.3, 0.4]))
    cur_c = pl.Series(rng.choice(list("abce"), 3000, p=[0.2, 0.2, 0.3, 0.3]))
    statistic, p_value, tv = st.chi_square_tv(ref_c, cur_c)
    assert (statistic, p_value) == st.chi_square(ref_c, cur_c)
    ref_s = ref_c.value_counts(normalize=True).sort("").to_dict(as_series=False)
    cur_s = cur_c.value_counts(normalize=True).sort("").to_dict(as_series=False)
    shares = {k: [0.0, 0.0] for k in "abcde"}
    for i, table in enumerate((ref_s, cur_s)):
        for key, share in zip(table[""], table["proportion"], strict=True):
            shares[key][i] = share
    expected = 0.5 * sum(abs(a - b) for a, b in shares.values())
    assert tv == pytest.approx(expected, rel=1e-12) == st.total_variation(ref_c, cur_c)


def _frame(n: int, seed: int, shift: float = 0.0, plan_b: float = 0.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(shift if i == 0 else 0.0, 1.0, n) for i in range(4)}
    shares = [plan_b, *(np.full(4, (1 - plan_b) / 4))]
    columns["plan"] = rng.choice(list("bcdef"), n, p=shares)
    return pl.DataFrame(columns)


def _run(
    window: pl.DataFrame, baseline: pl.DataFrame, **options: object
) -> dict[str, MetricResult]:
    results = get_metric("data_drift").compute(EvalContext(SPEC, window, baseline, options=options))
    return {r.column or "": r for r in results}


def test_holm_adjusts_over_the_columns_of_the_run_and_keeps_the_raw_p_value() -> None:
    window, baseline = _frame(2000, 1, shift=0.12), _frame(20_000, 2)
    results = _run(window, baseline)
    columns = [c for c in results if c]
    raw = [results[c].p_value for c in columns]
    adjusted = [results[c].p_adjusted for c in columns]
    assert adjusted == pytest.approx(adjust(raw, "holm").tolist())
    for how in ("bonferroni", "bh", "none"):
        again = _run(window, baseline, correction=how)
        got = [again[c].p_adjusted for c in columns]
        assert got == pytest.approx(adjust(raw, how).tolist())
    [bad] = _run(window, baseline, correction="sidak").values()
    assert bad.status is Status.ERROR and "known: holm, bonferroni, bh, none" in bad.detail


def test_a_column_breaches_on_its_adjusted_p_value() -> None:
    window, baseline = _frame(2000, 3, shift=0.15), _frame(20_000, 4)
    plain = _run(window, baseline, correction="none", min_effect=0)["x0"]
    held = _run(window, baseline, min_effect=0, threshold=plain.p_value * 2)["x0"]
    assert plain.status is Status.BREACH
    assert held.p_value == plain.p_value and held.p_adjusted > held.threshold
    assert held.status is Status.OK


def test_a_tiny_shift_in_a_million_rows_is_significant_but_not_drift() -> None:
    window, baseline = _frame(1_000_000, 5, shift=0.01), _frame(100_000, 6)
    x0 = _run(window, baseline, workers=1)["x0"]
    assert x0.p_adjusted < 0.01 and x0.effect < 0.1
    assert x0.status is Status.OK
    assert "significant (p_adj=" in x0.detail and "below min_effect 0.1" in x0.detail


def test_a_real_shift_and_a_category_doubling_are_drift() -> None:
    baseline = _frame(20_000, 7)
    shifted = _run(_frame(1000, 8, shift=0.5), baseline)["x0"]
    assert shifted.status is Status.BREACH and shifted.effect == pytest.approx(0.5, abs=0.1)
    doubled = _run(_frame(1000, 9, plan_b=0.2), baseline)["plan"]
    assert doubled.status is Status.BREACH and doubled.effect == pytest.approx(0.1, abs=0.04)
    shares = np.array([0.1, 0.225, 0.225, 0.225, 0.225]), np.full(5, 0.2)
    assert distance.jensenshannon(*shares) < 0.1  # why categorical floors are on TV, not JS
    floored = _run(_frame(1000, 9, plan_b=0.2), baseline, min_effects={"chi2": 0.5})["plan"]
    assert floored.status is Status.OK


def test_distances_stay_threshold_only_outside_the_family() -> None:
    window, baseline = _frame(1000, 10), _frame(5000, 11)
    results = _run(window, baseline, methods={"x1": "wasserstein", "plan": "js"})
    assert results["x1"].p_adjusted is None and results["x1"].detail == "wasserstein"
    tested = [c for c in ("x0", "x2", "x3") if results[c].p_adjusted is not None]
    assert "holm over 3" in results["x0"].detail and len(tested) == 3
