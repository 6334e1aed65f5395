"""The drift metrics over polars contexts: method choice, overrides, thresholds, the drifted
share and every bad-data case."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from evaluators import stattests as st
from evaluators.base import EvalContext, MetricResult, Status, get_metric, metric_keys
from evaluators.metrics import drift
from modelwatch.domain import ModelSpec

SPEC = ModelSpec.model_validate(
    {
        "name": "churn",
        "task": "binary",
        "features": [
            {"name": "age", "type": "numeric"},
            {"name": "income", "type": "numeric"},
            {"name": "plan", "type": "categorical"},
            {"name": "active", "type": "boolean"},
            {"name": "note", "type": "text"},
        ],
        "scores": True,
    }
)


def frame(n: int, seed: int, *, age_shift: float = 0.0, plans: str = "abc") -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 1, n)
    return pl.DataFrame(
        {
            "age": rng.normal(40 + age_shift, 10, n),
            "income": rng.lognormal(10, 1, n),
            "plan": rng.choice(list(plans), n),
            "active": rng.uniform(0, 1, n) < 0.6,
            "note": ["text"] * n,
            "prediction": np.where(score > 0.5, "1", "0"),
            "score": score,
            "label": rng.choice(["0", "1"], n),
        }
    )


def run(
    key: str,
    window: pl.DataFrame,
    baseline: pl.DataFrame | None,
    min_samples: int = 1,
    **options: Any,
) -> list[MetricResult]:
    ctx = EvalContext(SPEC, window, baseline, options=options, min_samples=min_samples)
    return get_metric(key).compute(ctx)


def by_column(results: list[MetricResult]) -> dict[str | None, MetricResult]:
    return {r.column: r for r in results}


def method_of(result: MetricResult) -> str:
    return result.detail.split(";")[0]


EVIDENTLY = {"method": "evidently", "correction": "none", "threshold": 0.05}
"""evidently's choice of method and its per-column rules."""


def test_every_method_is_registered_under_its_key() -> None:
    assert {"ks", "chi2", "z", "psi", "wasserstein", "jensenshannon", "data_drift"} <= set(
        metric_keys()
    )


@pytest.mark.parametrize("reference_rows", [800, 5000])
def test_every_column_gets_a_test_ks_chi_square_or_z(reference_rows: int) -> None:
    results = by_column(run("data_drift", frame(600, 1), frame(reference_rows, 2)))
    assert method_of(results["age"]) == "ks"
    assert method_of(results["plan"]) == "chi2"
    assert method_of(results["active"]) == "z"  # two values: evidently's proportion z-test
    assert method_of(results["prediction"]) == "z"
    assert method_of(results["score"]) == "ks"
    assert method_of(results["target"]) == "z"
    assert results["note"].status is Status.NOT_APPLICABLE
    assert all(r.p_adjusted is not None for c, r in results.items() if c not in (None, "note"))


def test_evidentlys_choice_on_request_small_and_large_reference() -> None:
    small = by_column(run("data_drift", frame(600, 1), frame(800, 2), method="evidently"))
    assert [method_of(small[c]) for c in ("age", "plan", "active")] == ["ks", "chi2", "z"]
    results = by_column(run("data_drift", frame(3000, 3), frame(2000, 4), method="evidently"))
    assert results["age"].detail == "wasserstein"
    assert results["plan"].detail == "jensenshannon"
    assert results["active"].detail == "jensenshannon"
    assert results["score"].detail == "wasserstein"
    assert results["age"].p_adjusted is None  # distances are outside the family


def test_few_valued_numeric_columns_are_counted() -> None:
    small = frame(500, 5).with_columns((pl.col("age") // 10).clip(3, 6))  # 4 values
    assert method_of(by_column(run("data_drift", small, small))["age"]) == "chi2"
    large = frame(2000, 6).with_columns((pl.col("age") > 40).cast(pl.Float64))
    assert method_of(by_column(run("data_drift", large, large))["age"]) == "z"
    chosen = by_column(run("data_drift", large, large, method="evidently"))
    assert chosen["age"].detail == "jensenshannon"


def test_values_are_the_statistics_with_p_values() -> None:
    window, baseline = frame(700, 7, age_shift=2), frame(900, 8)
    results = by_column(run("data_drift", window, baseline))
    statistic, p_value = st.ks(baseline["age"].to_numpy(), window["age"].to_numpy())
    assert results["age"].value == statistic
    assert results["age"].p_value == p_value
    assert results["age"].n == 700
    assert results["age"].threshold == 0.001  # family-wise, after the correction
    assert results["plan"].p_value == st.chi_square(baseline["plan"], window["plan"])[1]


def test_large_shift_is_a_breach_and_drift_share_counts_features_only() -> None:
    window = frame(3000, 9, age_shift=8, plans="cde")
    results = run("data_drift", window, frame(3000, 10))
    columns = by_column(results)
    assert columns["age"].status is Status.BREACH
    assert columns["plan"].status is Status.BREACH
    assert columns["income"].status is Status.OK
    share = results[-1]
    assert (share.column, share.label, share.metric) == (None, "drift_share", "data_drift")
    assert share.value == pytest.approx(2 / 4)  # age and plan of age, income, plan, active
    assert share.n == 4 and share.threshold == 0.5
    assert share.status is Status.BREACH  # evidently: share >= drift_share
    relaxed = run("data_drift", window, frame(3000, 10), drift_share=0.6)
    assert relaxed[-1].status is Status.OK


def test_per_column_and_global_method_overrides() -> None:
    window, baseline = frame(3000, 11), frame(3000, 12)
    results = by_column(
        run("data_drift", window, baseline, methods={"age": "psi", "plan": "chisquare"})
    )
    assert results["age"].detail == "psi" and results["age"].threshold == 0.1
    assert method_of(results["plan"]) == "chi2" and results["plan"].p_value is not None
    everything = by_column(run("data_drift", window, baseline, method="ks"))
    assert method_of(everything["income"]) == "ks"
    assert everything["plan"].status is Status.NOT_APPLICABLE
    unknown = by_column(run("data_drift", window, baseline, methods={"age": "magic"}))
    assert unknown["age"].status is Status.ERROR
    assert "known: ks, chi2" in unknown["age"].detail


def test_thresholds_by_method_by_column_and_for_all() -> None:
    window, baseline = frame(3000, 13), frame(3000, 14)
    chosen = {"method": "evidently"}
    tight = by_column(
        run("data_drift", window, baseline, thresholds={"wasserstein": 1e-12}, **chosen)
    )
    assert tight["age"].status is Status.BREACH and tight["age"].threshold == 1e-12
    assert tight["plan"].threshold == 0.1
    one = by_column(
        run("data_drift", window, baseline, column_thresholds={"income": 1e-12}, **chosen)
    )
    assert one["income"].status is Status.BREACH and one["age"].status is Status.OK
    every = by_column(run("data_drift", window, baseline, threshold=0.7))
    assert {every[c].threshold for c in ("age", "plan", "score")} == {0.7}


def test_single_method_metrics_run_on_the_columns_they_apply_to() -> None:
    window, baseline = frame(900, 15), frame(900, 16)
    assert set(by_column(run("ks", window, baseline))) == {"age", "income", "score"}
    assert set(by_column(run("chi2", window, baseline))) == {
        "plan",
        "active",
        "prediction",
        "target",
    }
    every_kind = {"active", "age", "income", "plan", "prediction", "score", "target"}
    assert set(by_column(run("psi", window, baseline))) == every_kind
    wasserstein = run("wasserstein", window, baseline)
    assert set(by_column(wasserstein)) == {"age", "income", "score"}
    assert all(r.metric == "wasserstein" for r in wasserstein)
    jensenshannon = run("jensenshannon", window, baseline)
    assert set(by_column(jensenshannon)) == every_kind
    assert all(r.p_value is None for r in jensenshannon)


def test_columns_option_restricts_and_knows_label_as_target() -> None:
    results = run("data_drift", frame(900, 17), frame(900, 18), columns=["age", "label"])
    assert [r.column for r in results] == ["age", "target", None]


def test_no_baseline() -> None:
    [result] = run("data_drift", frame(10, 19), None)
    assert result.status is Status.NO_BASELINE and result.column is None
    [result] = run("ks", frame(10, 19), None)
    assert result.status is Status.NO_BASELINE


def test_empty_window_and_too_few_samples() -> None:
    baseline = frame(500, 20)
    results = run("data_drift", baseline.clear(), baseline)
    assert {r.status for r in results if r.column != "note"} == {Status.INSUFFICIENT_DATA}
    few = by_column(run("data_drift", frame(30, 21), baseline, min_samples=50))
    assert few["age"].status is Status.INSUFFICIENT_DATA and few["age"].n == 30
    assert few[None].status is Status.INSUFFICIENT_DATA
    short = by_column(run("ks", frame(500, 22), baseline.head(10), min_samples=50))
    assert short["age"].status is Status.INSUFFICIENT_DATA


def test_nan_inf_and_nulls_are_dropped_and_reported() -> None:
    window = frame(600, 23).with_columns(
        pl.when(pl.int_range(pl.len()) < 5)
        .then(float("nan"))
        .when(pl.int_range(pl.len()) < 8)
        .then(float("inf"))
        .when(pl.int_range(pl.len()) < 10)
        .then(None)
        .otherwise(pl.col("age"))
        .alias("age")
    )
    baseline = frame(700, 24)
    result = by_column(run("data_drift", window, baseline))["age"]
    assert result.n == 590
    assert result.detail.startswith("ks; not significant (p_adj=")
    assert result.detail.endswith("; dropped NaN/inf: 8 in window")
    clean = window["age"].drop_nulls().filter(window["age"].drop_nulls().is_finite())
    assert result.value == st.ks(baseline["age"].to_numpy(), clean.to_numpy())[0]


def test_all_nan_window_column_is_insufficient_data() -> None:
    window = frame(100, 25).with_columns(pl.lit(float("nan")).alias("income"))
    result = by_column(run("data_drift", window, frame(100, 26)))["income"]
    assert result.status is Status.INSUFFICIENT_DATA
    assert result.detail == "0 values in the window"


def test_constant_columns() -> None:
    window = frame(600, 27).with_columns(pl.lit(5.0).alias("age"))
    baseline = frame(3000, 28).with_columns(pl.lit(5.0).alias("age"))
    ks = by_column(run("ks", window, baseline))["age"]
    assert (ks.value, ks.p_value, ks.status) == (0.0, 1.0, Status.OK)
    same = by_column(run("wasserstein", window, baseline))["age"]
    assert same.value == 0.0 and same.status is Status.OK
    moved = by_column(run("wasserstein", window.with_columns(pl.lit(5.001).alias("age")), baseline))
    assert moved["age"].value == pytest.approx(1.0)  # |5.001 - 5| / evidently's floor 0.001


def test_categories_unseen_in_the_reference_are_certain_drift() -> None:
    window, baseline = frame(800, 29, plans="abcz"), frame(800, 30)
    result = by_column(run("chi2", window, baseline, **EVIDENTLY))["plan"]
    assert result.value is None and result.p_value == 0.0  # the statistic is inf
    assert result.status is Status.BREACH and result.detail.endswith("; statistic inf")
    # a new value in a quarter of the window moves a quarter of the traffic: drift
    floored = by_column(run("chi2", window, baseline))["plan"]
    assert floored.status is Status.BREACH and floored.effect == pytest.approx(0.25, abs=0.05)
    rare = frame(800, 29).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("z")).otherwise("plan").alias("plan")
    )
    one = by_column(run("chi2", rare, baseline))["plan"]  # one row of 800: no drift
    assert one.p_value == 0.0 and one.p_adjusted == 0.0 and one.status is Status.OK
    assert "below min_effect 0.05" in one.detail


def test_unlabelled_window_gives_no_labels_for_the_target() -> None:
    window = frame(300, 31).with_columns(pl.lit(None, dtype=pl.String).alias("label"))
    result = by_column(run("data_drift", window, frame(300, 32)))["target"]
    assert result.status is Status.NO_LABELS


def test_bad_columns_give_errors_not_exceptions() -> None:
    baseline = frame(300, 33).drop("income")
    window = frame(300, 34).with_columns(pl.col("age").cast(pl.String))
    results = by_column(run("data_drift", window, baseline))
    assert results["income"].status is Status.ERROR and "missing" in results["income"].detail
    assert results["age"].status is Status.ERROR and "String" in results["age"].detail


def test_threads_give_the_same_results_as_one_thread() -> None:
    window, baseline = frame(60_000, 35, age_shift=0.3), frame(5000, 36)
    assert run("data_drift", window, baseline, workers=2) == run(
        "data_drift", window, baseline, workers=1
    )


def test_reference_profiles_are_cached_per_baseline_frame() -> None:
    baseline = frame(2000, 37)
    run("data_drift", frame(1000, 38), baseline)
    cached = drift._PROFILES[id(baseline)]
    assert ("age", "numeric") in cached
    profile = cached[("age", "numeric")].profile
    run("data_drift", frame(1000, 39), baseline)
    assert drift._PROFILES[id(baseline)][("age", "numeric")].profile is profile


def test_drift_rules_at_the_threshold_are_evidentlys() -> None:
    window, baseline = frame(700, 40, age_shift=1), frame(900, 41)
    rules = {"correction": "none", "min_effect": 0}
    first = by_column(run("data_drift", window, baseline, **rules))
    at = {m: first[c].p_value for m, c in (("ks", "age"), ("chi2", "plan"))}
    at["z"] = first["active"].p_value
    again = by_column(run("data_drift", window, baseline, thresholds=at, **rules))
    assert again["age"].status is Status.BREACH  # KS: p <= threshold
    assert again["plan"].status is Status.OK  # chi-square: p < threshold
    assert again["active"].status is Status.OK  # z: p < threshold
    chosen = {"method": "evidently"}
    large = by_column(run("data_drift", frame(2000, 42), frame(2000, 43), **chosen))
    value = large["age"].value
    on_it = by_column(
        run("data_drift", frame(2000, 42), frame(2000, 43), threshold=value, **chosen)
    )
    assert on_it["age"].status is Status.BREACH  # distances: value >= threshold


def test_per_column_options_take_the_frame_name_of_the_target_too() -> None:
    window, baseline = frame(3000, 44), frame(3000, 45)
    results = by_column(
        run(
            "data_drift",
            window,
            baseline,
            methods={"label": "psi"},
            column_thresholds={"target": 0.3},
        )
    )
    assert results["target"].detail == "psi" and results["target"].threshold == 0.3


def test_malformed_options_give_an_error_result() -> None:
    [result] = run("data_drift", frame(100, 46), frame(100, 47), workers="many")
    assert result.status is Status.ERROR and "ValueError" in result.detail
    results = run("data_drift", frame(100, 46), frame(100, 47), drift_share="half")
    assert [r.status for r in results] == [Status.ERROR]
