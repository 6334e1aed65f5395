"""Label-free performance estimation for regression: the MAE and RMSE a window is expected to
have, from its features and predictions, before its targets arrive.

Direct loss estimation (DLE) as NannyML does it
(https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html#direct-loss-estimation-dle):
loss models learnt from the reference (:mod:`evaluators.loss_models`) predict each row's
absolute and squared error; ``estimated_mae`` is the mean predicted absolute error,
``estimated_rmse`` the square root of the mean predicted squared error. Like CBPE it assumes the
relation between features and target has not changed (covariate shift only).

Bands. The sampling-error band ``ci_low``/``ci_high`` is ``estimate ± z·sd`` (``confidence``
sets z), where the window's realized figure should lie; ``sd`` is the larger of the realized
figure's spread over chunks of the window's size from the held-out reference (NannyML's
sampling error) and the spread the window's own rows imply, which follows a shift that widens
it: the sd of a mean of independent terms, with each row's ``Var|e| = E[e²] - (E|e|)²`` from its
two predicted losses for MAE, and for RMSE ``Var(e²) = 2·E[e²]²`` (normal errors) through the
delta method ``sd(√m) = sd(m) / (2√m)``. The threshold band ``band_low``/``band_high`` is the
realized figure's mean ± ``sigmas`` (default 3) sd over the same held-out chunks (NannyML's
thresholds), moved by the loss models' offset there (their mean estimate minus the mean
realized figure) and at least as wide as the estimates' own ± ``sigmas`` sd: the window's
estimate carries the same offset, which a small reference makes large enough to alarm on
windows like it (measured: 6 of 48 against one 2,000-row reference without the move, 0 of
120 against five with it). A larger error is worse, so only an estimate above the band is a
``breach``. A
``threshold`` option (an upper bound) replaces it. Where the window's targets have joined,
``detail`` also gives the realized figure and the estimate's error.

A reference without targets gives ``not_applicable`` saying so; no baseline ``no_baseline``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl

from evaluators import learnt
from evaluators.base import (
    EvalContext,
    Family,
    Metric,
    MetricResult,
    Status,
    Unavailable,
    interval_settings,
    register,
)
from evaluators.intervals import Floats
from evaluators.loss_models import PREDICTED, LossModels, fit_loss_models
from evaluators.metrics.multivariate import FeatureSet, feature_set
from modelwatch.domain import Task

__all__ = ["EstimatedMAE", "EstimatedRMSE", "realized_losses"]

MIN_REFERENCE_ROWS = 100  # labelled reference rows: half fits the loss models, half the bands
_NO_TARGET = "the reference has no target: direct loss estimation learns the loss from it"


def _floats(frame: pl.DataFrame, column: str) -> Floats:
    if column not in frame.columns:
        return np.full(frame.height, np.nan)
    values = frame[column].cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
    return np.asarray(values, dtype=np.float64)


def realized_losses(prediction: Floats, label: Floats) -> dict[Hashable, float]:
    """MAE and RMSE of ``prediction`` against ``label`` (rows where both are finite)."""
    known = np.isfinite(prediction) & np.isfinite(label)
    if not known.any():
        return {}
    error = prediction[known] - label[known]
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}


def _chunk_figures(chunk: pl.DataFrame) -> dict[Hashable, float]:
    """A held-out chunk's realized MAE and RMSE, and (keys ``("estimate", figure)``) the
    estimates the loss models give it."""
    figures = realized_losses(_floats(chunk, "prediction"), _floats(chunk, "label"))
    absolute, squared = (chunk[c].to_numpy() for c in PREDICTED)
    figures[("estimate", "mae")] = float(np.mean(absolute))
    figures[("estimate", "rmse")] = math.sqrt(float(np.mean(squared)))
    return figures


def _reference_rows(ctx: EvalContext, baseline: pl.DataFrame) -> pl.DataFrame:
    labelled = np.isfinite(_floats(baseline, "label")) & np.isfinite(
        _floats(baseline, "prediction")
    )
    count = int(np.count_nonzero(labelled))
    if count == 0:
        raise Unavailable(Status.NOT_APPLICABLE, _NO_TARGET, ctx.window.height)
    if count < MIN_REFERENCE_ROWS:
        detail = f"the reference has {count} rows with a target, fewer than {MIN_REFERENCE_ROWS}"
        raise Unavailable(Status.NOT_APPLICABLE, detail, ctx.window.height)
    rows = baseline.filter(pl.Series(labelled))
    return rows.with_columns(pl.col("prediction", "label").cast(pl.Float64))


def _models(
    ctx: EvalContext, baseline: pl.DataFrame, features: FeatureSet, seed: int
) -> LossModels:
    def build() -> LossModels:
        rows = _reference_rows(ctx, baseline)
        return fit_loss_models(rows, features.numeric, features.categorical, seed)

    return learnt.cached(baseline, ("dle", features.key, seed), build)


@dataclass(frozen=True)
class Estimate:
    figures: dict[str, float]
    spread: dict[str, float]  # sd of each figure implied by the window's predicted losses
    realized: dict[Hashable, float]
    bands: dict[Hashable, learnt.Band]
    n: int
    detail: str


def _spread(absolute: Floats, squared: Floats) -> dict[str, float]:
    n = absolute.size
    mae_sd = math.sqrt(float(np.sum(np.maximum(squared - absolute**2, 0.0)))) / n
    mse = float(np.mean(squared))
    mse_sd = math.sqrt(float(np.sum(2.0 * squared**2))) / n
    return {"mae": mae_sd, "rmse": mse_sd / (2.0 * math.sqrt(mse)) if mse > 0 else 0.0}


def _estimate(ctx: EvalContext) -> Estimate:
    baseline = ctx.baseline
    if baseline is None:
        raise Unavailable(Status.NO_BASELINE, "no baseline", ctx.window.height)
    prediction = _floats(ctx.window, "prediction")
    usable = np.isfinite(prediction)
    n = int(np.count_nonzero(usable))
    if n < max(ctx.min_samples, 1):
        detail = f"{n} rows with a prediction, fewer than the minimum {ctx.min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)
    seed = int(ctx.option("seed", 0))
    features = feature_set(ctx, baseline)
    models = _models(ctx, baseline, features, seed)
    rows = ctx.window.filter(pl.Series(usable))
    absolute, squared = models.predict(rows, prediction[usable])
    figures = {"mae": float(np.mean(absolute)), "rmse": math.sqrt(float(np.mean(squared)))}
    size = learnt.size_bucket(n)

    def learn() -> dict[Hashable, learnt.Band]:
        chunks = learnt.reference_chunks(models.held_out, size, seed)
        return learnt.learn_bands(chunks, _chunk_figures)

    bands = learnt.cached(baseline, ("dle bands", features.key, size, seed), learn)
    realized = realized_losses(prediction[usable], _floats(rows, "label"))
    notes = [f"loss models fitted on {models.fitted} reference rows" + features.note()]
    if n < ctx.window.height:
        notes.append(f"{ctx.window.height - n} rows without a finite prediction left out")
    spread = _spread(absolute, squared)
    return Estimate(figures, spread, realized, bands, n, "; ".join(notes))


def _threshold_band(
    realized: learnt.Band, usual: learnt.Band, n: int, sigmas: float
) -> tuple[float, float]:
    """The realized figure's band over held-out chunks, moved by the loss models' offset on
    those chunks (mean estimate - mean realized) and at least as wide as the estimates'
    own band there: an estimate is judged against what the same models said of rows like
    the reference's, so a loss model that is slightly off does not alarm every window."""
    low, high = realized.edges(n, sigmas)
    offset = usual.centre - realized.centre
    own_low, own_high = usual.edges(n, sigmas)
    return max(0.0, min(low + offset, own_low)), max(high + offset, own_high)


def _number(ctx: EvalContext, name: str, default: float | None) -> float | None:
    value = ctx.option(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unavailable(Status.ERROR, f"option {name!r} must be a number, got {value!r}")
    return float(value)


class _EstimatedLoss(Metric):
    family: ClassVar[Family] = Family.ESTIMATION
    tasks: ClassVar[frozenset[Task]] = frozenset({Task.REGRESSION})
    figure: ClassVar[str]

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        if ctx.spec.task is not Task.REGRESSION:
            detail = f"{self.key} applies to regression models, not {ctx.spec.task}"
            return [self.status_only(Status.NOT_APPLICABLE, 0, detail)]
        try:
            settings = interval_settings(ctx.options)
            sigmas = _number(ctx, "sigmas", 3.0)
            threshold = _number(ctx, "threshold", None)
            if sigmas is None or not sigmas > 0:
                raise Unavailable(Status.ERROR, f"option 'sigmas' must be positive: {sigmas!r}")
            est = ctx.memoised("dle estimate", ctx.window, lambda: _estimate(ctx))
        except Unavailable as skip:
            return [self.unavailable(skip)]
        value = est.figures[self.figure]
        if not math.isfinite(value):
            return [self.status_only(Status.ERROR, est.n, "the estimate is not finite")]
        details, fields, status = [est.detail], dict[str, float](), Status.OK
        band, usual = est.bands.get(self.figure), est.bands.get(("estimate", self.figure))
        if band is not None and usual is not None:
            chunks = band.spread * math.sqrt(band.size / est.n)
            half = settings.z * max(chunks, est.spread[self.figure])
            fields = {"ci_low": max(0.0, value - half), "ci_high": value + half}
            low, high = _threshold_band(band, usual, est.n, sigmas)
            if threshold is None:
                fields |= {"band_low": low, "band_high": high}
                status = Status.BREACH if value > high else Status.OK
            details.append(f"band [{low:.4g}, {high:.4g}] from held-out {band.how}")
        if threshold is not None:
            fields["threshold"] = threshold
            status = Status.BREACH if value > threshold else Status.OK
        real = est.realized.get(self.figure)
        if real is not None:
            details.append(f"realized {real:.4g}, estimate's error {value - real:+.4g}")
        return [self.result(value, est.n, status=status, detail="; ".join(details), **fields)]


@register
class EstimatedMAE(_EstimatedLoss):
    key = "estimated_mae"
    description = "mean absolute error expected from features and predictions, no labels (DLE)"
    figure = "mae"


@register
class EstimatedRMSE(_EstimatedLoss):
    key = "estimated_rmse"
    description = "root mean squared error expected from features and predictions (DLE)"
    figure = "rmse"
