"""Seeded simulations of the default drift check and the recommended drift policy
(:mod:`bench.drift_alarms`): few false alarms without drift, a real shift caught within two
windows, and fewer alarms than evidently's defaults on the same windows.

The 30-day runs are reliability tests; the default run keeps ten days and the shifts.
"""

from __future__ import annotations

import pytest

from bench import drift_alarms as da
from bench.common import CATEGORICAL, NUMERIC


def test_the_default_drift_checks_are_the_corrected_data_drift() -> None:
    assert da.default_drift_keys()[0] == "data_drift"


def test_ten_days_without_drift_stay_quiet() -> None:
    null = da.null_scenario(240, methods=False)
    assert null.breach_windows["any"] <= 0.01 * null.windows
    assert null.alerts == []
    assert null.evidently_column_windows > 3 * max(null.breach_windows["any"], 1)


@pytest.mark.reliability
def test_thirty_days_without_drift_at_most_one_percent_and_one_alert() -> None:
    null = da.null_scenario(720)
    assert null.breach_windows["any"] <= 7  # 1% of 720
    assert len(null.alerts) <= 1
    assert null.breach_windows["any"] < null.evidently_column_windows
    assert null.per_method["ks"] < 0.001 and null.per_method["chi2"] < 0.002


@pytest.mark.parametrize(
    ("shift", "column"),
    [(da.Shift(sigmas=0.5), NUMERIC[0]), (da.Shift(first=0.2), CATEGORICAL[0])],
    ids=["mean-0.5-sigma", "category-10-to-20-percent"],
)
def test_a_real_shift_fires_the_policy_within_two_windows(shift: da.Shift, column: str) -> None:
    figures = da.shift_scenario(column, shift, column, count=da.SHIFT_START + 4)
    assert figures.first_alert is not None and figures.first_alert <= 1
    assert figures.breach_share == 1.0


def test_the_policy_counts_breaches_per_column_through_the_condition_code() -> None:
    drifted = [da.MetricResult("data_drift", 0.2, 1000, da.Status.BREACH, column="num_1")]
    clear = [da.MetricResult("data_drift", 0.01, 1000, da.Status.OK, column="num_1")]
    other = [da.MetricResult("data_drift", 0.2, 1000, da.Status.BREACH, column="num_2")]
    assert da.firings([drifted, clear, drifted], da.RECOMMENDED_POLICY) == [2]
    assert da.firings([drifted, other, clear, clear], da.RECOMMENDED_POLICY) == []
    assert da.firings([drifted, clear, clear, drifted], da.RECOMMENDED_POLICY) == []


@pytest.mark.reliability
def test_evidentlys_rules_reproduced_match_evidently_itself() -> None:
    assert da.check_evidently(2) == "2 of 2 windows with the same drifted columns"
