"""Data-quality metrics: exact answers on small hand-built windows, and every bad-data case."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from scipy import stats

from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from modelwatch.domain import ModelSpec

SPEC = ModelSpec.model_validate(
    {
        "name": "churn",
        "task": "binary",
        "features": [
            {"name": "age", "type": "numeric"},
            {"name": "plan", "type": "categorical"},
            {"name": "active", "type": "boolean"},
            {"name": "note", "type": "text"},
        ],
    }
)
NAN, INF = math.nan, math.inf
SCHEMA = {"age": pl.Float64, "plan": pl.String, "active": pl.Boolean, "note": pl.String}


def frame(**columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema={k: SCHEMA[k] for k in columns})


def run(
    key: str,
    window: pl.DataFrame,
    baseline: pl.DataFrame | None = None,
    min_samples: int = 1,
    **options: Any,
) -> dict[str | None, MetricResult]:
    ctx = EvalContext(
        spec=SPEC, window=window, baseline=baseline, options=options, min_samples=min_samples
    )
    results = get_metric(key).compute(ctx)
    return {r.column: r for r in results}


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


WINDOW = frame(
    age=[1.0, None, NAN, 4.0],
    plan=["a", None, "b", "c"],
    active=[True, False, True, None],
    note=["x", "y", "z", "w"],
)


def test_registered_in_the_quality_family() -> None:
    keys = {
        "missing_rate",
        "out_of_range",
        "unseen_categories",
        "schema_violations",
        "constant_columns",
        "volume",
    }
    assert keys <= set(metric_keys(Family.QUALITY))


# --- missing_rate ---------------------------------------------------------------------


def test_missing_rate_counts_nulls_and_nan_with_wilson_ci() -> None:
    results = run("missing_rate", WINDOW)
    assert {c: r.value for c, r in results.items()} == {
        "age": 0.5,
        "plan": 0.25,
        "active": 0.25,
        "note": 0.0,
    }
    age = results["age"]
    assert (age.n, age.status, age.detail) == (4, Status.OK, "2 of 4 missing")
    assert (age.ci_low, age.ci_high) == pytest.approx(wilson(2, 4))
    assert (results["note"].ci_low, results["note"].ci_high) == pytest.approx(wilson(0, 4))


def test_missing_rate_breaches_above_the_threshold() -> None:
    results = run("missing_rate", WINDOW, threshold=0.3)
    assert results["age"].status is Status.BREACH
    assert results["age"].threshold == 0.3
    assert results["plan"].status is Status.OK


def test_features_option_restricts_the_columns() -> None:
    assert list(run("missing_rate", WINDOW, features=["plan"])) == ["plan"]


def test_prefixed_feature_column_is_found() -> None:
    window = WINDOW.rename({"age": "feature:age"})
    assert run("missing_rate", window)["age"].value == 0.5


@pytest.mark.parametrize("key", ["missing_rate", "constant_columns", "out_of_range"])
def test_empty_and_small_windows_are_insufficient_data(key: str) -> None:
    empty = WINDOW.clear()
    for window, minimum in ((empty, 1), (WINDOW, 5)):
        results = run(key, window, baseline=WINDOW, min_samples=minimum)
        assert results
        assert all(
            r.status is Status.INSUFFICIENT_DATA and r.value is None for r in results.values()
        )


def test_feature_absent_from_the_window_is_an_error() -> None:
    result = run("missing_rate", WINDOW.drop("plan"))["plan"]
    assert result.status is Status.ERROR
    assert "not in the window" in result.detail


def test_bad_threshold_is_an_error() -> None:
    results = run("missing_rate", WINDOW, threshold="high")
    assert all(r.status is Status.ERROR for r in results.values())


# --- out_of_range ---------------------------------------------------------------------


def test_out_of_range_against_the_reference_min_max() -> None:
    reference = frame(age=[0.0, 10.0, 5.0, None, NAN, INF, -INF])
    window = frame(age=[-1.0, 0.0, 5.0, 10.0, 11.0, INF, None, NAN])
    result = run("out_of_range", window, baseline=reference)["age"]
    assert (result.value, result.n) == (0.5, 6)
    assert result.detail == "reference range [0, 10]: 1 below, 2 above"
    assert (result.ci_low, result.ci_high) == pytest.approx(wilson(3, 6))


def test_out_of_range_only_reports_numeric_features() -> None:
    assert list(run("out_of_range", WINDOW, baseline=WINDOW)) == ["age"]


def test_out_of_range_threshold() -> None:
    reference = frame(age=[0.0, 1.0])
    window = frame(age=[0.5, 2.0, 3.0, 0.0])
    assert run("out_of_range", window, reference, threshold=0.4)["age"].status is Status.BREACH
    assert run("out_of_range", window, reference, threshold=0.5)["age"].status is Status.OK


def test_out_of_range_without_reference_is_no_baseline() -> None:
    for baseline in (None, WINDOW.drop("age"), frame(age=[None, NAN]), frame(age=[INF])):
        result = run("out_of_range", WINDOW, baseline=baseline)["age"]
        assert result.status is Status.NO_BASELINE, baseline
        assert result.value is None


def test_out_of_range_all_missing_window_is_insufficient() -> None:
    result = run("out_of_range", frame(age=[None, NAN]), baseline=frame(age=[1.0]))["age"]
    assert result.status is Status.INSUFFICIENT_DATA


# --- unseen_categories ----------------------------------------------------------------


def test_unseen_categories_share_and_most_frequent_values() -> None:
    reference = frame(plan=["a", "b", "c", None], active=[True, True, None, True])
    window = frame(
        plan=["a", "d", "d", "e", None, "b", "i", "h", "g", "f"],
        active=[True, False, None, True, True, True, True, True, True, True],
    )
    results = run("unseen_categories", window, baseline=reference)
    assert list(results) == ["plan", "active"]
    plan = results["plan"]
    assert plan.value == pytest.approx(7 / 9)
    assert plan.n == 9
    assert plan.detail == "6 distinct unseen, most frequent: ['d', 'e', 'f', 'g', 'h']"
    assert (plan.ci_low, plan.ci_high) == pytest.approx(wilson(7, 9))
    active = results["active"]
    assert active.value == pytest.approx(1 / 9)
    assert active.n == 9
    assert active.detail == "1 distinct unseen, most frequent: ['false']"


def test_no_unseen_categories() -> None:
    result = run("unseen_categories", WINDOW, baseline=WINDOW)["plan"]
    assert (result.value, result.status, result.detail) == (0.0, Status.OK, "0 distinct unseen")


def test_unseen_categories_without_reference_is_no_baseline() -> None:
    results = run("unseen_categories", WINDOW)
    assert [r.status for r in results.values()] == [Status.NO_BASELINE] * 2
    result = run("unseen_categories", WINDOW, baseline=frame(plan=[None], active=[None]))["plan"]
    assert result.status is Status.NO_BASELINE


def test_unseen_categories_threshold() -> None:
    reference = frame(plan=["a"], active=[True])
    window = frame(plan=["a", "b"], active=[True, True])
    results = run("unseen_categories", window, reference, threshold=0.0)
    assert results["plan"].status is Status.BREACH
    assert results["active"].status is Status.OK


# --- constant_columns -----------------------------------------------------------------


def test_constant_columns_against_the_reference() -> None:
    window = frame(
        age=[3.0, 3.0, None, NAN],
        plan=["a", "b", "a", "a"],
        active=[None, None, None, None],
        note=["x", "x", "x", "x"],
    )
    reference = frame(
        age=[1.0, 2.0, 2.0, 3.0],
        plan=["a", "b", "c", "a"],
        active=[True, False, True, True],
        note=["x", "x", None, "x"],
    )
    results = run("constant_columns", window, baseline=reference)
    assert {c: (r.value, r.status) for c, r in results.items()} == {
        "age": (1.0, Status.BREACH),
        "plan": (0.0, Status.OK),
        "active": (1.0, Status.BREACH),
        "note": (1.0, Status.OK),
    }
    assert results["age"].detail == "single value 3.0; the reference varies"
    assert results["active"].detail == "all missing; the reference varies"
    assert results["note"].detail == "single value 'x'; constant in the reference too"
    assert results["age"].n == 4


def test_constant_column_without_reference_keeps_its_value() -> None:
    window = frame(age=[1.0, 1.0], plan=["a", "b"])
    results = run("constant_columns", window, features=["age", "plan"])
    assert (results["age"].value, results["age"].status) == (1.0, Status.NO_BASELINE)
    assert (results["plan"].value, results["plan"].status) == (0.0, Status.OK)


# --- schema_violations ----------------------------------------------------------------


def test_schema_violations_share_of_rejected_events() -> None:
    window = frame(age=[1.0] * 75)
    (result,) = run("schema_violations", window, rejected_events=25).values()
    assert (result.value, result.n, result.column) == (0.25, 100, None)
    assert result.detail == "25 rejected, 75 stored"
    assert (result.ci_low, result.ci_high) == pytest.approx(wilson(25, 100))
    (breach,) = run("schema_violations", window, rejected_events=25, threshold=0.2).values()
    assert breach.status is Status.BREACH


def test_schema_violations_defaults_to_no_rejections() -> None:
    (result,) = run("schema_violations", WINDOW).values()
    assert (result.value, result.n, result.status) == (0.0, 4, Status.OK)


def test_schema_violations_all_rejected_in_an_empty_window() -> None:
    (result,) = run("schema_violations", WINDOW.clear(), rejected_events=10).values()
    assert (result.value, result.n) == (1.0, 10)


def test_schema_violations_insufficient_and_malformed() -> None:
    (empty,) = run("schema_violations", WINDOW.clear()).values()
    assert empty.status is Status.INSUFFICIENT_DATA
    (small,) = run("schema_violations", WINDOW, min_samples=10, rejected_events=2).values()
    assert (small.status, small.n) == (Status.INSUFFICIENT_DATA, 6)
    for bad in (-1, 1.5, "7", True, NAN):
        (result,) = run("schema_violations", WINDOW, rejected_events=bad).values()
        assert result.status is Status.ERROR, bad


# --- volume ---------------------------------------------------------------------------


def volume(rows: int, **options: Any) -> MetricResult:
    (result,) = run("volume", frame(age=[1.0] * rows), min_samples=30, **options).values()
    return result


def test_volume_within_and_outside_the_tolerance() -> None:
    assert (volume(80, expected_volume=100).value, volume(80, expected_volume=100).status) == (
        80.0,
        Status.OK,
    )
    assert volume(80, expected_volume=100).detail == "expected 100 ± 50%: [50, 150]"
    assert volume(50, expected_volume=100).status is Status.OK
    assert volume(151, expected_volume=100).status is Status.BREACH
    assert volume(49, expected_volume=100).status is Status.BREACH
    assert volume(80, expected_volume=100, tolerance=0.1).status is Status.BREACH


def test_empty_window_is_a_volume_breach_not_insufficient_data() -> None:
    result = volume(0, expected_volume=100)
    assert (result.value, result.n, result.status) == (0.0, 0, Status.BREACH)


def test_volume_without_expectation_is_ok() -> None:
    result = volume(3)
    assert (result.value, result.status, result.detail) == (
        3.0,
        Status.OK,
        "no expected volume yet",
    )


def test_volume_malformed_options_are_errors() -> None:
    assert volume(3, expected_volume="many").status is Status.ERROR
    assert volume(3, expected_volume=-5).status is Status.ERROR
    assert volume(3, expected_volume=10, tolerance=-1).status is Status.ERROR
