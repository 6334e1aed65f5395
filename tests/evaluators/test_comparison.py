"""Champion vs challenger: published CI values, scipy/sklearn references, every bad-data case."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from modelwatch.domain import ModelSpec

FEATURES = [{"name": "x", "type": "numeric"}]
BINARY = ModelSpec.model_validate({"name": "b", "task": "binary", "features": FEATURES})
MULTI = ModelSpec.model_validate(
    {"name": "m", "task": "multiclass", "features": FEATURES, "classes": ["a", "b", "c"]}
)
REGRESSION = ModelSpec.model_validate({"name": "r", "task": "regression", "features": FEATURES})
Array = npt.NDArray[Any]


def events(
    ids: list[str] | Array, prediction: Array | list[Any], label: Array | list[Any] | None
) -> pl.DataFrame:
    numeric = np.asarray(prediction).dtype.kind == "f"
    dtype = pl.Float64 if numeric else pl.String
    labels = [None] * len(ids) if label is None else list(label)
    return pl.DataFrame(
        {"request_id": list(ids), "prediction": list(prediction), "label": labels},
        schema={"request_id": pl.String, "prediction": dtype, "label": dtype},
    )


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def compare(
    spec: ModelSpec,
    champion: pl.DataFrame,
    challenger: pl.DataFrame | None,
    min_samples: int = 1,
    **options: Any,
) -> dict[str | None, MetricResult]:
    ctx = EvalContext(
        spec=spec, window=champion, challenger=challenger, options=options, min_samples=min_samples
    )
    return {r.label: r for r in get_metric("champion_challenger").compute(ctx)}


def test_registered_in_the_comparison_family() -> None:
    assert {"champion_challenger", "cost_diff"} <= set(metric_keys(Family.COMPARISON))


# --- accuracy -------------------------------------------------------------------------


def cavo_pairs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fagerland et al.'s paired example (Cavo 2012): both right 59, only the challenger
    right 6, only the champion right 16, both wrong 80."""
    cells = [("1", "1", 59), ("0", "1", 6), ("1", "0", 16), ("0", "0", 80)]
    champ = [c for c, _, k in cells for _ in range(k)]
    chall = [c for _, c, k in cells for _ in range(k)]
    rid = ids("r", 161)
    return events(rid, champ, ["1"] * 161), events(rid, chall, ["1"] * 161)


def test_shadow_accuracy_newcombe_paired_ci_and_exact_mcnemar() -> None:
    champion, challenger = cavo_pairs()
    result = compare(BINARY, champion, challenger, min_samples=30)["accuracy"]
    assert (result.n, result.detail, result.status) == (161, "shadow", Status.OK)
    assert result.value == pytest.approx((6 - 16) / 161)
    # Published: estimate -0.0621, 95% CI -0.1186 to -0.0046 (Newcombe square-and-add).
    assert result.ci_low == pytest.approx(-0.1186, abs=5e-5)
    assert result.ci_high == pytest.approx(-0.0046, abs=5e-5)
    mcnemar = 2 * sum(math.comb(22, k) for k in range(7)) / 2**22
    assert result.p_value == pytest.approx(mcnemar)


def test_split_accuracy_newcombe_hybrid_score_ci() -> None:
    champion = events(ids("c", 80), ["1"] * 48 + ["0"] * 32, ["1"] * 80)
    challenger = events(ids("h", 70), ["1"] * 56 + ["0"] * 14, ["1"] * 70)
    result = compare(BINARY, champion, challenger, min_samples=30)["accuracy"]
    assert (result.n, result.detail) == (150, "split")
    assert result.value == pytest.approx(56 / 70 - 48 / 80)
    # Newcombe (1998), example 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    assert result.ci_low == pytest.approx(0.0524, abs=5e-5)
    assert result.ci_high == pytest.approx(0.3339, abs=5e-5)
    pooled = 104 / 150
    z = 0.2 / math.sqrt(pooled * (1 - pooled) * (1 / 80 + 1 / 70))
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_identical_models_have_zero_difference() -> None:
    champion, _ = cavo_pairs()
    result = compare(BINARY, champion, champion)["accuracy"]
    assert (result.value, result.p_value) == (0.0, 1.0)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0 < result.ci_high


# --- F1 -------------------------------------------------------------------------------


def noisy_labels(rng: np.random.Generator, y: Array, flip: float, classes: list[str]) -> Array:
    wrong = rng.random(y.size) < flip
    return np.where(wrong, rng.choice(classes, y.size), y)


def reference_paired_f1_ci(
    y: Array, p1: Array, p2: Array, resamples: int, seed: int
) -> tuple[float, float]:
    """Row bootstrap of F1(challenger) - F1(champion), positive class '1'."""
    rows = np.random.default_rng(seed).integers(0, y.size, size=(resamples, y.size))
    yb, b1, b2 = y[rows] == "1", p1[rows] == "1", p2[rows] == "1"

    def f1(pred: Array) -> Array:
        tp = np.sum(yb & pred, axis=1)
        return np.asarray(2 * tp / (yb.sum(axis=1) + pred.sum(axis=1)))

    low, high = np.quantile(f1(b2) - f1(b1), [0.025, 0.975])
    return float(low), float(high)


def test_shadow_binary_f1_difference_and_bootstrap_ci() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(["0", "1"], 600, p=[0.6, 0.4])
    p1, p2 = noisy_labels(rng, y, 0.5, ["0", "1"]), noisy_labels(rng, y, 0.3, ["0", "1"])
    rid = ids("r", y.size)
    result = compare(BINARY, events(rid, p1, y), events(rid, p2, y), bootstrap=4000)["f1"]
    expected = f1_score(y, p2, pos_label="1") - f1_score(y, p1, pos_label="1")
    assert result.value == pytest.approx(expected)
    low, high = reference_paired_f1_ci(y, p1, p2, 4000, seed=11)
    assert result.ci_low == pytest.approx(low, abs=0.012)
    assert result.ci_high == pytest.approx(high, abs=0.012)
    assert (result.n, result.p_value, result.detail) == (600, None, "shadow")


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(4)
    y = rng.choice(["0", "1"], 200)
    p1, p2 = noisy_labels(rng, y, 0.4, ["0", "1"]), noisy_labels(rng, y, 0.4, ["0", "1"])
    rid = ids("r", y.size)
    first = compare(BINARY, events(rid, p1, y), events(rid, p2, y))["f1"]
    again = compare(BINARY, events(rid, p1, y), events(rid, p2, y))["f1"]
    other = compare(BINARY, events(rid, p1, y), events(rid, p2, y), seed=5)["f1"]
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_shadow_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.choice(["a", "b"], 300)  # class c is never the truth ...
    p1 = noisy_labels(rng, y, 0.3, ["a", "b", "c"])  # ... but the champion predicts it
    p2 = noisy_labels(rng, y, 0.2, ["a", "b"])
    rid = ids("r", y.size)
    result = compare(MULTI, events(rid, p1, y), events(rid, p2, y))["f1"]
    expected = f1_score(y, p2, average="macro") - f1_score(y, p1, average="macro")
    assert result.value == pytest.approx(expected)
    assert result.value is not None and result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < result.value < result.ci_high


def test_split_f1_matches_sklearn_per_side() -> None:
    rng = np.random.default_rng(6)
    y1, y2 = rng.choice(["a", "b", "c"], 250), rng.choice(["a", "b", "c"], 200)
    p1, p2 = (
        noisy_labels(rng, y1, 0.4, ["a", "b", "c"]),
        noisy_labels(rng, y2, 0.2, ["a", "b", "c"]),
    )
    champion, challenger = events(ids("c", 250), p1, y1), events(ids("h", 200), p2, y2)
    results = compare(MULTI, champion, challenger)
    f1 = results["f1"]
    expected = f1_score(y2, p2, average="macro") - f1_score(y1, p1, average="macro")
    assert f1.value == pytest.approx(expected)
    assert (f1.n, f1.detail) == (450, "split")
    assert f1.value is not None and f1.ci_low is not None and f1.ci_high is not None
    assert f1.ci_low < f1.value < f1.ci_high
    assert results["accuracy"].value == pytest.approx(np.mean(p2 == y2) - np.mean(p1 == y1))


def test_single_class_window_keeps_accuracy_and_skips_f1() -> None:
    rid = ids("r", 50)
    champion = events(rid, ["0"] * 40 + ["1"] * 10, ["0"] * 50)
    challenger = events(rid, ["0"] * 45 + ["1"] * 5, ["0"] * 50)
    results = compare(BINARY, champion, challenger)
    assert results["accuracy"].value == pytest.approx(0.1)
    assert results["f1"].status is Status.NOT_APPLICABLE
    assert results["f1"].value is None


# --- regression -----------------------------------------------------------------------


def regression_data(n: int, seed: int) -> tuple[Array, Array, Array]:
    rng = np.random.default_rng(seed)
    y = rng.normal(10.0, 3.0, n)
    return y, y + rng.normal(0.0, 1.0, n), y + rng.normal(0.1, 0.8, n)


def test_shadow_mae_is_a_paired_t_interval() -> None:
    y, p1, p2 = regression_data(300, 7)
    rid = ids("r", 300)
    results = compare(REGRESSION, events(rid, p1, y), events(rid, p2, y), min_samples=30)
    mae = results["mae"]
    a1, a2 = np.abs(p1 - y), np.abs(p2 - y)
    test = stats.ttest_rel(a2, a1)
    ci = test.confidence_interval(0.95)
    assert mae.value == pytest.approx(a2.mean() - a1.mean())
    assert (mae.ci_low, mae.ci_high) == pytest.approx((ci.low, ci.high))
    assert mae.p_value == pytest.approx(test.pvalue)
    assert (mae.n, mae.detail) == (300, "shadow")


def test_shadow_rmse_delta_method() -> None:
    y, p1, p2 = regression_data(2000, 8)
    rid = ids("r", 2000)
    rmse = compare(REGRESSION, events(rid, p1, y), events(rid, p2, y))["rmse"]
    s1, s2 = (p1 - y) ** 2, (p2 - y) ** 2
    r1, r2 = math.sqrt(s1.mean()), math.sqrt(s2.mean())
    cov = np.cov(s1, s2)
    var = (cov[0, 0] / (4 * r1**2) + cov[1, 1] / (4 * r2**2) - cov[0, 1] / (2 * r1 * r2)) / 2000
    half = 1.959963984540054 * math.sqrt(var)
    assert rmse.value == pytest.approx(r2 - r1)
    assert (rmse.ci_low, rmse.ci_high) == pytest.approx((r2 - r1 - half, r2 - r1 + half))
    # ... and it agrees with a paired row bootstrap.
    rows = np.random.default_rng(0).integers(0, 2000, size=(2000, 2000))
    boot = np.sqrt(s2[rows].mean(axis=1)) - np.sqrt(s1[rows].mean(axis=1))
    low, high = np.quantile(boot, [0.025, 0.975])
    assert (rmse.ci_low, rmse.ci_high) == pytest.approx((low, high), abs=0.1 * (high - low))


def test_split_regression_welch_and_square_and_add() -> None:
    y1, p1, _ = regression_data(400, 9)
    y2, _, p2 = regression_data(300, 10)
    results = compare(REGRESSION, events(ids("c", 400), p1, y1), events(ids("h", 300), p2, y2))
    a1, a2 = np.abs(p1 - y1), np.abs(p2 - y2)
    test = stats.ttest_ind(a2, a1, equal_var=False)
    ci = test.confidence_interval(0.95)
    mae = results["mae"]
    assert mae.value == pytest.approx(a2.mean() - a1.mean())
    assert (mae.n, mae.detail) == (700, "split")
    assert (mae.ci_low, mae.ci_high) == pytest.approx((ci.low, ci.high))
    assert mae.p_value == pytest.approx(test.pvalue)
    rmse = results["rmse"]
    e1, e2 = (p1 - y1) ** 2, (p2 - y2) ** 2
    assert rmse.value == pytest.approx(math.sqrt(e2.mean()) - math.sqrt(e1.mean()))
    rng = np.random.default_rng(1)
    boot = np.sqrt(e2[rng.integers(0, 300, (3000, 300))].mean(axis=1)) - np.sqrt(
        e1[rng.integers(0, 400, (3000, 400))].mean(axis=1)
    )
    low, high = np.quantile(boot, [0.025, 0.975])
    assert (rmse.ci_low, rmse.ci_high) == pytest.approx((low, high), abs=0.1 * (high - low))


def test_non_finite_regression_values_are_dropped() -> None:
    y, p1, p2 = regression_data(50, 11)
    p1[:3] = [np.nan, np.inf, -np.inf]
    y[3] = np.nan
    rid = ids("r", 50)
    mae = compare(REGRESSION, events(rid, p1, y), events(rid, p2, y))["mae"]
    keep = slice(4, None)
    expected = np.abs(p2[keep] - y[keep]).mean() - np.abs(p1[keep] - y[keep]).mean()
    assert mae.n == 46
    assert mae.value == pytest.approx(expected)


def test_perfect_predictions_give_no_rmse_interval() -> None:
    y = np.arange(40.0)
    rid = ids("r", 40)
    rmse = compare(REGRESSION, events(rid, y.copy(), y), events(rid, y + 1.0, y))["rmse"]
    assert (rmse.value, rmse.ci_low, rmse.status) == (1.0, None, Status.OK)


# --- modes and bad data ---------------------------------------------------------------


def test_auto_mode_needs_min_samples_shared_ids() -> None:
    y, p1, p2 = regression_data(100, 12)
    champion = events(ids("r", 100), p1, y)
    challenger = events(ids("r", 10) + ids("h", 90), p2, y)  # 10 shared ids
    assert compare(REGRESSION, champion, challenger, min_samples=30)["mae"].detail == "split"
    assert compare(REGRESSION, champion, challenger, min_samples=10)["mae"].detail == "shadow"


def test_forced_modes() -> None:
    champion, challenger = cavo_pairs()
    split = compare(BINARY, champion, challenger, mode="split")["accuracy"]
    assert (split.detail, split.n) == ("split", 322)
    disjoint = events(ids("h", 161), challenger["prediction"].to_list(), ["1"] * 161)
    result = compare(BINARY, champion, disjoint, mode="shadow")["accuracy"]
    assert result.status is Status.INSUFFICIENT_DATA
    bad = compare(BINARY, champion, challenger, mode="both")
    assert [r.status for r in bad.values()] == [Status.ERROR, Status.ERROR]


def test_shadow_labels_may_have_joined_on_either_side() -> None:
    champion, challenger = cavo_pairs()
    champion = champion.with_columns(pl.lit(None, pl.String).alias("label"))
    assert compare(BINARY, champion, challenger)["accuracy"].n == 161


def test_no_labels() -> None:
    rid = ids("r", 50)
    champion = events(rid, ["1"] * 50, None)
    for challenger in (events(rid, ["0"] * 50, None), champion.drop("label")):
        results = compare(BINARY, champion, challenger)
        assert [r.status for r in results.values()] == [Status.NO_LABELS] * 2
    split = compare(BINARY, champion, events(ids("h", 5), ["1"] * 5, ["1"] * 5))
    assert split["accuracy"].status is Status.NO_LABELS


def test_empty_small_and_missing_windows() -> None:
    champion, challenger = cavo_pairs()
    cases = [
        (champion.clear(), challenger, 1, Status.INSUFFICIENT_DATA),
        (champion, challenger.clear(), 1, Status.INSUFFICIENT_DATA),
        (champion, challenger, 200, Status.INSUFFICIENT_DATA),
        (champion, None, 1, Status.NOT_APPLICABLE),
        (champion.drop("prediction"), challenger, 1, Status.ERROR),
    ]
    for champ, chall, minimum, status in cases:
        results = compare(BINARY, champ, chall, min_samples=minimum)
        assert list(results) == ["accuracy", "f1"]
        assert all(r.status is status and r.value is None for r in results.values()), status


def test_bad_interval_options_are_errors() -> None:
    champion, challenger = cavo_pairs()
    for options in ({"confidence": 2}, {"bootstrap": 1}, {"seed": -1}):
        results = compare(BINARY, champion, challenger, **options)
        assert all(r.status is Status.ERROR for r in results.values())


# --- cost_diff ------------------------------------------------------------------------

USAGE_SCHEMA = dict.fromkeys(
    ("latency_ms", "cpu_seconds", "gpu_seconds", "memory_mb", "cost"), pl.Float64
)


def usage(**columns: Sequence[float | None]) -> pl.DataFrame:
    rows = len(next(iter(columns.values())))
    return pl.DataFrame(
        {c: columns.get(c, [None] * rows) for c in USAGE_SCHEMA}, schema=USAGE_SCHEMA
    )


def cost_diff(
    champion_usage: pl.DataFrame | None,
    challenger_usage: Any,
    rows: tuple[int, int] = (100, 50),
    min_samples: int = 1,
    challenger: bool = True,
) -> dict[str | None, MetricResult]:
    options = {"prices": {"cpu_hour": 3.6}, "window_hours": 1.0}
    if challenger_usage is not None:
        options["challenger_usage"] = challenger_usage
    ctx = EvalContext(
        spec=REGRESSION,
        window=events(ids("c", rows[0]), np.zeros(rows[0]), None),
        challenger=events(ids("h", rows[1]), np.zeros(rows[1]), None) if challenger else None,
        usage=champion_usage,
        options=options,
        min_samples=min_samples,
    )
    return {r.label: r for r in get_metric("cost_diff").compute(ctx)}


LATENCY = list(np.arange(1.0, 101.0))
CHAMPION_USAGE = usage(cost=[1.0] + [None] * 99, latency_ms=LATENCY)
CHALLENGER_USAGE = usage(
    cost=[0.4] + [None] * 99, cpu_seconds=[0.0] + [36.0] * 99, latency_ms=[2 * v for v in LATENCY]
)


def test_cost_and_latency_differences() -> None:
    results = cost_diff(CHAMPION_USAGE, CHALLENGER_USAGE)
    cost = results["cost_per_1k"]
    # champion: $1 over 100 predictions = 10; challenger: ($0.4 + 99 * 36 s at $3.6/h) over 50.
    assert cost.value == pytest.approx((0.4 + 99 * 0.036) / 50 * 1000 - 10.0)
    assert cost.n == 150
    assert cost.detail.startswith("champion 10, challenger ")
    p95 = results["latency_p95"]
    values = np.array(LATENCY)
    diff = np.quantile(2 * values, 0.95) - np.quantile(values, 0.95)
    assert p95.value == pytest.approx(diff)
    assert p95.n == 200
    low = int(stats.binom.ppf(0.025, 100, 0.95))
    high = min(int(stats.binom.ppf(0.975, 100, 0.95)) + 1, 100)
    half = math.hypot((high - low) / 2, (2 * high - 2 * low) / 2)
    assert (p95.ci_low, p95.ci_high) == pytest.approx((diff - half, diff + half))


def test_cost_diff_bad_data() -> None:
    missing = cost_diff(CHAMPION_USAGE, None)
    assert [r.status for r in missing.values()] == [Status.INSUFFICIENT_DATA] * 2
    assert "challenger" in missing["cost_per_1k"].detail
    no_window = cost_diff(CHAMPION_USAGE, CHALLENGER_USAGE, challenger=False)
    assert [r.status for r in no_window.values()] == [Status.NOT_APPLICABLE] * 2
    wrong = cost_diff(CHAMPION_USAGE, {"cost": [1.0]})
    assert [r.status for r in wrong.values()] == [Status.ERROR] * 2
    empty = cost_diff(CHAMPION_USAGE, CHALLENGER_USAGE, rows=(100, 0))
    assert empty["cost_per_1k"].status is Status.INSUFFICIENT_DATA
    assert empty["latency_p95"].status is Status.OK  # latency needs samples, not predictions
    few = cost_diff(CHAMPION_USAGE, CHALLENGER_USAGE, min_samples=101)
    assert [r.status for r in few.values()] == [Status.INSUFFICIENT_DATA] * 2


def test_two_sided_normal_p_value_equals_scipy() -> None:
    from evaluators.metrics.comparison import _two_sided_normal

    for z in np.linspace(0.0, 30.0, 3001):
        expected = 2 * stats.norm.sf(z)
        assert _two_sided_normal(float(z)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
