"""Regression metrics, each with its sample size and a confidence interval.

Rows count when their ``label`` has joined; rows whose label or prediction is missing
or not finite are left out and counted in ``detail``. Errors are ``prediction - label``.

- ``mae``: mean absolute error; normal interval of the mean.
- ``rmse``: root mean squared error; delta-method interval.
- ``mape``: mean of ``|error| / |label|`` as a fraction (0.05 is 5 %), as sklearn's
  ``mean_absolute_percentage_error``; rows labelled 0 are skipped and counted in
  ``detail`` (sklearn instead divides by machine epsilon); normal interval of the mean.
- ``r2``: coefficient of determination; ``not_applicable`` when the labels are constant
  (sklearn reports 0 or 1 there); bootstrap interval.
- ``error_quantiles``: p50, p90, p95, p99 of the absolute error (numpy's linear
  interpolation); binomial order-statistic interval.

``threshold`` marks ``breach`` above it (below it for ``r2``); without one, a figure outside
the band learnt from the baseline's chunks is a ``breach`` (:mod:`evaluators.metrics.sampled`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl

from evaluators.base import EvalContext, Family, MetricResult, Status, register
from evaluators.intervals import (
    Floats,
    IntervalSettings,
    Statistic,
    bootstrap_interval,
    bounds,
    mean_interval,
    quantile_interval,
    rmse_interval,
)
from evaluators.metrics.sampled import SampledMetric
from modelwatch.domain import Task

__all__ = ["MAE", "MAPE", "R2", "RMSE", "ErrorQuantiles", "Errors"]

QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class Errors:
    """A regression window's usable rows: labels, errors and rows left out."""

    y: Floats
    error: Floats  # prediction - label
    notes: tuple[str, ...]

    @property
    def n(self) -> int:
        return int(self.y.size)


class _RegressionMetric(SampledMetric[Errors]):
    family = Family.REGRESSION
    tasks = frozenset({Task.REGRESSION})
    higher_is_better: ClassVar[bool | None] = False
    value_range: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def sample(self, ctx: EvalContext, rows: pl.DataFrame) -> Errors | MetricResult:
        if "prediction" not in rows.columns:
            return self.status_only(Status.NOT_APPLICABLE, 0, "the window has no predictions")
        y = rows["label"].cast(pl.Float64, strict=False).to_numpy()
        pred = rows["prediction"].cast(pl.Float64, strict=False).to_numpy()
        finite = np.isfinite(y) & np.isfinite(pred)
        notes: tuple[str, ...] = ()
        if not finite.all():
            bad = int(np.count_nonzero(~finite))
            notes = (f"{bad} rows with a missing or non-finite label or prediction left out",)
        return Errors(y[finite], pred[finite] - y[finite], notes)


@register
class MAE(_RegressionMetric):
    key = "mae"
    description = "mean absolute error; normal interval"

    def evaluate(
        self, w: Errors, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        absolute = np.abs(w.error)
        low, high = mean_interval(absolute, settings.confidence, lo=0.0)
        return [self.result(float(np.mean(absolute)), w.n, **bounds(low, high))]


@register
class RMSE(_RegressionMetric):
    key = "rmse"
    description = "root mean squared error; delta-method interval"

    def evaluate(
        self, w: Errors, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        squared = w.error**2
        low, high = rmse_interval(squared, settings.confidence)
        return [self.result(float(np.sqrt(np.mean(squared))), w.n, **bounds(low, high))]


@register
class MAPE(_RegressionMetric):
    key = "mape"
    description = "mean absolute percentage error (a fraction), labels 0 skipped; normal interval"

    def evaluate(
        self, w: Errors, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        nonzero = w.y != 0.0
        used = int(np.count_nonzero(nonzero))
        detail = f"{w.n - used} rows labelled 0 skipped" if used < w.n else ""
        if used < max(ctx.min_samples, 1):
            detail = f"{used} rows with a non-zero label, fewer than the minimum; {detail}"
            return [self.status_only(Status.INSUFFICIENT_DATA, used, detail.rstrip("; "))]
        ratios = np.abs(w.error[nonzero]) / np.abs(w.y[nonzero])
        low, high = mean_interval(ratios, settings.confidence, lo=0.0)
        return [self.result(float(np.mean(ratios)), used, detail=detail, **bounds(low, high))]


@register
class R2(_RegressionMetric):
    key = "r2"
    description = "coefficient of determination; bootstrap interval"
    higher_is_better = True
    value_range = (-math.inf, 1.0)

    def evaluate(
        self, w: Errors, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        centred = w.y - np.mean(w.y)
        total = float(np.sum(centred**2))
        if total == 0.0:
            detail = "labels are constant: R² is undefined"
            return [self.status_only(Status.NOT_APPLICABLE, w.n, detail)]
        value = 1.0 - float(np.sum(w.error**2)) / total
        low, high = bootstrap_interval(_r2_statistic(centred, w.error), w.n, settings)
        return [self.result(value, w.n, **bounds(low[0], high[0]))]


def _r2_statistic(centred: Floats, error: Floats) -> Statistic:
    """R² for row weights ``(b, n)`` from four weighted sums (labels pre-centred)."""
    columns = np.column_stack([np.ones_like(centred), centred, centred**2, error**2])

    def statistic(weights: Floats) -> Floats:
        count, total, square, residual = (weights @ columns).T
        spread = square - total**2 / count
        return np.where(spread > 0.0, 1.0 - residual / spread, np.nan)

    return statistic


@register
class ErrorQuantiles(_RegressionMetric):
    key = "error_quantiles"
    description = "p50/p90/p95/p99 of the absolute error; order-statistic interval"

    def has_band(self, result: MetricResult) -> bool:
        return True

    def evaluate(
        self, w: Errors, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        ordered = np.sort(np.abs(w.error))
        qs = np.array(list(QUANTILES.values()))
        values = np.quantile(ordered, qs)
        low, high = quantile_interval(ordered, qs, settings.confidence)
        return [
            self.result(float(values[i]), w.n, label=label, **bounds(low[i], high[i]))
            for i, label in enumerate(QUANTILES)
        ]
