"""Direct loss estimation (DLE) for regression: golden figures against scikit-learn's
HistGradientBoostingRegressor fitted directly, what is missing, the options, the default
checks, and a seeded simulation of covariate shift with hourly windows of 1,000."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error

from alerts.conditions import evaluate, persistence
from evaluators.base import EvalContext, get_metric
from evaluators.checks import resolve_checks
from evaluators.loss_models import fit_rows
from modelwatch.domain import ModelSpec, Task
from modelwatch.monitors import MonitorSpec
from modelwatch.policies import Condition
from modelwatch.results import MetricResult, Status

SPEC = ModelSpec.model_validate(
    {
        "name": "r",
        "task": "regression",
        "features": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"}],
    }
)
KEYS = ["estimated_mae", "estimated_rmse"]


def regression_frame(n: int, seed: int, shift: float = 0.0, concept: bool = False) -> pl.DataFrame:
    """prediction = 2·x1 + x2, the target's mean; the noise's sd is 0.3 + 0.7·|x1|
    (heteroscedastic), so moving x1 away from 0 (``shift``) raises the error. ``concept``:
    the noise's sd is 0.3 + 1.4·|x2| instead, a changed relation between features and target."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    prediction = 2.0 * x1 + x2
    sd = 0.3 + 1.4 * np.abs(x2) if concept else 0.3 + 0.7 * np.abs(x1)
    return pl.DataFrame(
        {"x1": x1, "x2": x2, "prediction": prediction, "label": prediction + rng.normal(0, sd)}
    )


def _ctx(window: pl.DataFrame, baseline: pl.DataFrame | None, **options: Any) -> EvalContext:
    memo: dict[Hashable, Any] = {}
    return EvalContext(
        spec=SPEC, window=window, baseline=baseline, options=options, min_samples=30, memo=memo
    )


def _all(ctx: EvalContext) -> dict[str, MetricResult]:
    return {k: get_metric(k).compute(ctx)[0] for k in KEYS}


REFERENCE = regression_frame(20_000, 1)


def _x(frame: pl.DataFrame) -> np.ndarray:
    return frame.select("x1", "x2", "prediction").to_numpy()


def test_the_estimate_is_the_mean_loss_a_directly_fitted_regressor_predicts() -> None:
    reference, window = regression_frame(4_000, 2), regression_frame(1_000, 3)
    results = _all(_ctx(window, reference))
    fit = reference.filter(pl.Series(fit_rows(reference.height, 0)))
    assert fit.height == 2_000
    error = (fit["prediction"] - fit["label"]).to_numpy()
    absolute = HistGradientBoostingRegressor(random_state=0).fit(_x(fit), np.abs(error))
    squared = HistGradientBoostingRegressor(random_state=0).fit(_x(fit), error**2)
    expected_mae = np.maximum(absolute.predict(_x(window)), 0.0).mean()
    expected_rmse = math.sqrt(np.maximum(squared.predict(_x(window)), 0.0).mean())
    assert results["estimated_mae"].value == pytest.approx(expected_mae, rel=1e-12)
    assert results["estimated_rmse"].value == pytest.approx(expected_rmse, rel=1e-12)
    realized = mean_absolute_error(window["label"], window["prediction"])
    assert f"realized {realized:.4g}" in results["estimated_mae"].detail
    for result in results.values():
        assert result.status is Status.OK and result.n == 1_000
        assert result.ci_low < result.value < result.ci_high
        assert result.band_low < result.value < result.band_high
        assert "loss models fitted on 2000 reference rows" in result.detail


def test_a_categorical_feature_and_missing_values_are_used() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "r",
            "task": "regression",
            "features": [{"name": "x1", "type": "numeric"}, {"name": "c", "type": "categorical"}],
        }
    )
    rng = np.random.default_rng(4)

    def frame(n: int) -> pl.DataFrame:
        c = rng.choice(["calm", "noisy"], n)
        pred = rng.normal(0, 1, n)
        x1 = pl.Series(np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n)))
        label = pred + rng.normal(0, np.where(c == "noisy", 2.0, 0.2))
        return pl.DataFrame({"x1": x1, "c": c, "prediction": pred, "label": label})

    calm = frame(1_000).with_columns(pl.lit("calm").alias("c"))
    ctx = EvalContext(spec=spec, window=calm, baseline=frame(6_000), min_samples=30)
    [result] = get_metric("estimated_mae").compute(ctx)
    # A calm row's expected absolute error is 0.2·sqrt(2/π) = 0.16; the reference's 0.88.
    assert result.value == pytest.approx(0.16, abs=0.05)
    # Below the band is a smaller error than the reference's: not a breach.
    assert result.band_low is not None and result.value < result.band_low
    assert result.status is Status.OK


def test_without_a_target_baseline_or_rows_it_says_why() -> None:
    window = regression_frame(500, 5)
    for reference in (REFERENCE.drop("label"), REFERENCE.with_columns(pl.lit(None).alias("label"))):
        [result] = get_metric("estimated_mae").compute(_ctx(window, reference))
        assert result.status is Status.NOT_APPLICABLE and "no target" in result.detail
    [none] = get_metric("estimated_rmse").compute(_ctx(window, None))
    assert none.status is Status.NO_BASELINE
    [few] = get_metric("estimated_mae").compute(_ctx(window.head(10), REFERENCE))
    assert few.status is Status.INSUFFICIENT_DATA and few.value is None and few.n == 10
    unlabelled = window.drop("label")
    [result] = get_metric("estimated_mae").compute(_ctx(unlabelled, REFERENCE))
    assert result.status is Status.OK and "realized" not in result.detail


def test_a_user_threshold_wins_and_bad_options_are_errors() -> None:
    window = regression_frame(1_000, 6)
    [result] = get_metric("estimated_mae").compute(_ctx(window, REFERENCE, threshold=0.1))
    assert result.status is Status.BREACH and result.threshold == 0.1
    assert result.band_low is None and result.ci_low is not None
    [bad] = get_metric("estimated_mae").compute(_ctx(window, REFERENCE, sigmas=-1))
    assert bad.status is Status.ERROR and "sigmas" in bad.detail
    [bad] = get_metric("estimated_rmse").compute(_ctx(window, REFERENCE, threshold="x"))
    assert bad.status is Status.ERROR and "threshold" in bad.detail


def test_the_estimates_are_default_checks_when_the_reference_has_targets() -> None:
    spec = MonitorSpec.model_validate({"name": "m", "model": "r", "window": "1h"})
    with_targets = [c.metric for c in resolve_checks(spec, Task.REGRESSION, targets=True)]
    assert set(KEYS) <= set(with_targets)
    without = [c.metric for c in resolve_checks(spec, Task.REGRESSION)]
    assert not set(KEYS) & set(without)
    binary = [c.metric for c in resolve_checks(spec, Task.BINARY, targets=True)]
    assert not set(KEYS) & set(binary)


def _simulate(windows: int, shift_at: int, concept: bool = False) -> list[MetricResult]:
    out = []
    for i in range(windows):
        after = i >= shift_at
        window = regression_frame(
            1_000, 1_000 + i, shift=1.5 if after and not concept else 0.0, concept=after and concept
        )
        out.append(get_metric("estimated_mae").compute(_ctx(window, REFERENCE))[0])
    return out


def realized(result: MetricResult) -> float:
    return float(result.detail.split("realized ")[1].split(",")[0])


def test_simulation_covariate_shift_the_band_covers_and_the_policy_fires() -> None:
    runs = _simulate(48, 24)
    inside = [r.ci_low <= realized(r) <= r.ci_high for r in runs]
    error = np.mean([abs(r.value - realized(r)) for r in runs])
    before = np.mean([realized(r) for r in runs[:24]])
    after = np.mean([realized(r) for r in runs[24:]])
    print(f"coverage {np.mean(inside):.3f}, MAE of the estimate {error:.4f}")
    print(f"realized MAE {before:.3f} before the shift, {after:.3f} after")
    assert after > before * 1.3  # the shift raises the error
    assert np.mean(inside) >= 0.9, np.mean(inside)
    assert error < 0.03
    frame = pl.DataFrame(
        [
            (1, i, "estimated_mae", "", "", "", r.value, r.status.value, r.band_low, r.band_high)
            for i, r in enumerate(runs)
        ],
        schema=[
            "version_id",
            "window_start_us",
            "metric",
            "column_name",
            "label",
            "segment",
            "value",
            "status",
            "band_low",
            "band_high",
        ],
        orient="row",
    )
    condition = Condition.model_validate(
        {"outside_band": {"metric": "estimated_mae", "side": "above"}}
    )
    verdicts = evaluate(condition, frame, None)
    firing = [
        i for i in range(48) if persistence([v.breach for v in verdicts[: i + 1]], 2, None).firing
    ]
    assert firing and 24 <= firing[0] <= 25  # for: 2, within 2 windows of the shift


def test_a_small_reference_does_not_alarm_windows_like_it() -> None:
    """With 2,000 reference rows the loss models, fitted on 1,000, are a little off; the
    threshold band moves by their offset on the held-out half, so windows drawn like the
    reference stay inside it (without the offset one such reference breached 6 of 48)."""
    breaches, windows = 0, 0
    for seed in range(10, 15):
        reference = regression_frame(2_000, seed)
        for i in range(24):
            window = regression_frame(1_000, 7_000 + 100 * seed + i)
            [result] = get_metric("estimated_mae").compute(_ctx(window, reference))
            breaches += result.status is Status.BREACH
            windows += 1
    print(f"{breaches} breaches in {windows} windows without a shift")
    assert breaches <= 1
