"""What label-free estimation cannot see: concept drift. Seeded simulations where the relation
between features and labels changes while the features do not; the estimates stay where they
were and the realized figures leave their sampling-error bands. The figures are in the README
("Label-free performance estimation")."""

from __future__ import annotations

import numpy as np
import polars as pl

from evaluators.base import EvalContext, get_metric
from modelwatch.results import MetricResult
from tests.evaluators.test_estimation import BINARY, REFERENCE, binary_frame
from tests.evaluators.test_estimation_regression import REFERENCE as REGRESSION_REFERENCE
from tests.evaluators.test_estimation_regression import SPEC, realized, regression_frame


def _figures(runs: list[MetricResult]) -> tuple[float, float, float, float]:
    """Coverage of the sampling-error band, the estimate's mean absolute error, the mean
    estimate and the mean realized figure."""
    inside = np.mean([r.ci_low <= realized(r) <= r.ci_high for r in runs])
    error = np.mean([abs(r.value - realized(r)) for r in runs])
    estimate = np.mean([r.value for r in runs])
    return float(inside), float(error), float(estimate), float(np.mean([realized(r) for r in runs]))


def _concept_binary(n: int, seed: int) -> pl.DataFrame:
    """The features and scores of ``binary_frame``, labels drawn from sigmoid(0.5x): the
    model's scores sigmoid(2x) are now over-confident."""
    frame = binary_frame(n, seed)
    rng = np.random.default_rng(seed + 10_000)
    truth = 1.0 / (1.0 + np.exp(-0.5 * frame["x"].to_numpy()))
    return frame.with_columns(pl.Series("label", (rng.random(n) < truth).astype(int).astype(str)))


def test_concept_drift_is_invisible_to_cbpe() -> None:
    runs = []
    for i in range(24):
        window = _concept_binary(1_000, 2_000 + i)
        runs.append(
            get_metric("estimated_accuracy").compute(
                EvalContext(BINARY, window, REFERENCE, min_samples=30)
            )[0]
        )
    inside, error, estimate, real = _figures(runs)
    print(f"CBPE accuracy under concept drift: coverage {inside:.3f}, error {error:.4f}")
    print(f"estimate {estimate:.4f}, realized {real:.4f}")
    assert real < estimate - 0.1  # the realized accuracy falls, the estimate does not follow
    assert inside < 0.1


def test_concept_drift_is_invisible_to_dle() -> None:
    runs = []
    for i in range(24):
        window = regression_frame(1_000, 2_000 + i, concept=True)
        ctx = EvalContext(SPEC, window, REGRESSION_REFERENCE, min_samples=30)
        runs.append(get_metric("estimated_mae").compute(ctx)[0])
    inside, error, estimate, real = _figures(runs)
    print(f"DLE MAE under concept drift: coverage {inside:.3f}, error {error:.4f}")
    print(f"estimate {estimate:.4f}, realized {real:.4f}")
    assert real > estimate * 1.3
    assert inside < 0.1
