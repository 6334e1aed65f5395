"""Label-free performance estimation for classification: what the window's accuracy, precision,
recall, F1, specificity and ROC AUC are expected to be, from its scores, before labels arrive.

Confidence-based performance estimation (CBPE) as NannyML does it
(https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html): with
calibrated scores, a row predicted ``j`` whose class ``a`` has probability ``p_a`` adds ``p_a``
to the expected confusion cell (actual ``a``, predicted ``j``). From the expected matrix ``E``:
accuracy ``trace(E)/n``; per class one-vs-rest TP, FP, FN, TN and from them precision, recall,
F1 ``2TP/(2TP+FP+FN)`` and specificity ``TN/(TN+FP)``; binary models report the positive class,
multiclass ones the macro average over the classes (label ``macro``; a class with no
expected row in a figure's denominator is left out of its average). ROC AUC: rows ranked by
the class's score, the expected true-positive rate at each threshold ``Σ p / Σ_all p`` and the
false-positive rate ``Σ (1-p) / Σ_all (1-p)``, the area by the trapezoid rule (NannyML's; we
rank by the score as sent, which the realized AUC will use, and weight by the calibrated
probability, so the isotonic map's flat steps add no ties; with labels as the weights this is
exactly scikit-learn's ``roc_auc_score``).

Calibration (:mod:`evaluators.calibration`): isotonic maps learnt from the baseline's scores and
labels, kept only when they lower its expected calibration error; the decision and both errors
are in every result's ``detail``. The estimate assumes calibrated scores and that the relation
between features and labels has not changed (covariate shift only): under concept drift the
scores stay confident while the model is wrong, and the estimate stays where it was.

Bands. The sampling-error band ``ci_low``/``ci_high`` is ``estimate ± z·sd`` (``confidence``
sets z), where the window's realized figure should lie: ``sd`` is the larger of the realized
figure's spread over baseline chunks of the window's size (NannyML's sampling error,
:func:`evaluators.learnt.reference_chunks`) and its spread over 100 label sets drawn from the
window's calibrated probabilities, which follows a shift that widens it (measured: after a
covariate shift taking ROC AUC from 0.92 to 0.77, the reference's spread alone left the
realized AUC of 6 of 24 shifted windows outside a 95 % band; with both, 1). The threshold band
``band_low``/``band_high`` is ``mean ± sigmas·sd`` (default 3, NannyML's thresholds) of the
realized figure over the same baseline chunks; an estimate outside it is a ``breach``. A
``threshold`` option (a lower bound) replaces it. Where the window's labels have joined,
``detail`` also gives the realized figure and the estimate's error.

Models without scores, or a baseline without labels or scores, get ``not_applicable`` saying
what is missing; no baseline gives ``no_baseline``.
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
from evaluators.calibration import Calibration, fit_calibration
from evaluators.intervals import Floats, Ints
from evaluators.metrics.classification import _codes, _positive, _two_columns
from modelwatch.domain import Task

__all__ = ["Rows", "estimated_figures", "rows_of"]

DRAWS = 100
DRAW_ROWS = 5_000
_NO_SCORES = "no scores: label-free estimation reads the model's scores, and it sends none"


@dataclass(frozen=True)
class Rows:
    """A frame's usable rows: scores (n, K) as sent, predictions, labels (-1: not joined)."""

    proba: Floats
    pred: Ints
    y: Ints
    left_out: int


def _score_columns(ctx: EvalContext) -> list[str]:
    if _positive(ctx) is not None:
        return ["score"]
    return [f"score_{c}" for c in ctx.spec.class_list]


def rows_of(ctx: EvalContext, frame: pl.DataFrame) -> Rows:
    """Rows with every score finite in [0, 1] and a prediction among the classes."""
    names, classes = _score_columns(ctx), tuple(ctx.spec.class_list)
    missing = [c for c in names if c not in frame.columns or frame[c].null_count() == frame.height]
    if missing or "prediction" not in frame.columns:
        what = ", ".join(missing) if missing else "prediction"
        raise Unavailable(Status.NOT_APPLICABLE, f"{_NO_SCORES} ({what} missing)", frame.height)
    scores = frame.select(pl.col(names).cast(pl.Float64, strict=False)).to_numpy()
    pred = _codes(frame["prediction"], classes)
    y = _codes(frame["label"], classes) if "label" in frame.columns else np.full(pred.size, -1)
    keep = np.all(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0), axis=1) & (pred >= 0)
    positive = _positive(ctx)
    proba = scores[keep] if positive is None else _two_columns(scores[keep, 0], positive)
    return Rows(proba, pred[keep], y[keep], int(keep.size - np.count_nonzero(keep)))


def _auc(order: Floats, weight: Floats) -> float:
    """Trapezoidal area under (Σ(1-w), Σw) over thresholds at distinct ``order`` values,
    rows taken in descending ``order``; NaN when either total is 0."""
    ranked = np.argsort(-order, kind="stable")
    ordered, w = order[ranked], weight[ranked]
    ends = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1]
    tp, fp = np.cumsum(w)[ends], np.cumsum(1.0 - w)[ends]
    if tp[-1] <= 0.0 or fp[-1] <= 0.0:
        return math.nan
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))


def _ratio(num: Floats, den: Floats) -> Floats:
    out: Floats = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
    return out


def estimated_figures(
    p: Floats, pred: Ints, scores: Floats, positive: int | None
) -> dict[str, float]:
    """The six figures from class probabilities ``p`` (n, K) of rows predicted ``pred``
    (``scores`` rank rows for ROC AUC). ``p`` one-hot on the labels gives the realized figures."""
    k = p.shape[1]
    onehot = np.zeros((pred.size, k))
    onehot[np.arange(pred.size), pred] = 1.0
    e = p.T @ onehot  # (actual, predicted)
    n = float(pred.size)
    tp = np.diag(e)
    fp, fn = e.sum(axis=0) - tp, e.sum(axis=1) - tp
    tn = n - tp - fp - fn
    per_class = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2.0 * tp, 2.0 * tp + fp + fn),
        "specificity": _ratio(tn, tn + fp),
        "roc_auc": np.full(k, np.nan),
    }
    for c in [positive] if positive is not None else range(k):  # a binary model reports one
        per_class["roc_auc"][c] = _auc(scores[:, c], p[:, c])
    out = {"accuracy": float(np.trace(e) / n) if n else math.nan}
    for name, values in per_class.items():
        if positive is not None:
            out[name] = float(values[positive])
        else:
            finite = values[np.isfinite(values)]
            out[name] = float(finite.mean()) if finite.size else math.nan
    return out


@dataclass(frozen=True)
class Estimator:
    """What is learnt from a baseline: the calibration map."""

    calibration: Calibration


def _fit(ctx: EvalContext, baseline: pl.DataFrame) -> Estimator:
    rows = rows_of(ctx, baseline)
    labelled = rows.y >= 0
    if np.count_nonzero(labelled) < 2:
        detail = "the baseline has no labels: the calibration is learnt from its scores and labels"
        raise Unavailable(Status.NOT_APPLICABLE, detail, ctx.window.height)
    calibration = fit_calibration(rows.proba[labelled], rows.y[labelled], _positive(ctx))
    return Estimator(calibration)


def _realized(ctx: EvalContext, frame: pl.DataFrame) -> dict[Hashable, float]:
    rows = rows_of(ctx, frame)
    known = rows.y >= 0
    y, proba = rows.y[known], rows.proba[known]
    if y.size == 0:
        return {}
    onehot = np.zeros_like(proba)
    onehot[np.arange(y.size), y] = 1.0
    figures: dict[Hashable, float] = {}
    figures.update(estimated_figures(onehot, rows.pred[known], proba, _positive(ctx)))
    return figures


@dataclass(frozen=True)
class Estimate:
    figures: dict[str, float]
    realized: dict[Hashable, float]
    bands: dict[Hashable, learnt.Band]
    spread: dict[str, float]  # sd of each figure with labels drawn from the window's p
    n: int
    detail: str


def _drawn_auc(order: Floats, hits: np.ndarray) -> Floats:
    """:func:`_auc` for each row of ``hits`` (draws by rows, 0/1) at once, by the
    Mann-Whitney identity (Mann & Whitney 1947; Hanley & McNeil 1982): the area is
    (sum of the positives' mid-ranks - P(P+1)/2) / (P N), which equals the trapezoidal
    area with ties counted half. One ranking per window and one matrix-vector product
    for all draws, instead of a sort and two cumulative sums per draw."""
    n = order.size
    ranked = np.argsort(order, kind="stable")
    ordered = order[ranked]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    stops = np.r_[starts[1:], n]
    ranks = np.empty(n)
    ranks[ranked] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
    w = hits.astype(np.float64)
    positives = w.sum(axis=1)
    negatives = n - positives
    defined = (positives > 0.0) & (negatives > 0.0)
    area = (w @ ranks - positives * (positives + 1.0) / 2.0) / np.where(
        defined, positives * negatives, 1.0
    )
    out: Floats = np.where(defined, area, np.nan)
    return out


def _drawn_figures(
    labels: Ints, pred: Ints, scores: Floats, positive: int | None, k: int
) -> dict[str, Floats]:
    """:func:`estimated_figures` with one-hot labels, for every row of ``labels``
    (draws by rows) at once."""
    n = labels.shape[1]
    classes = [positive] if positive is not None else list(range(k))
    if positive is not None and k == 2:
        tp, fp, fn, tn = _binary_cells(labels == positive, pred == positive, n)
        columns, accuracy = [0], (tp[:, 0] + tn[:, 0]) / n
    else:
        tp, fp, fn, tn = _confusion_cells(labels, pred, k)
        columns, accuracy = classes, tp.sum(axis=1) / n
    per_class = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2.0 * tp, 2.0 * tp + fp + fn),
        "specificity": _ratio(tn, tn + fp),
    }
    aucs = np.column_stack([_drawn_auc(scores[:, c], labels == c) for c in classes])
    out = {"accuracy": accuracy}
    for name, values in per_class.items():
        out[name] = _macro(values[:, columns])
    out["roc_auc"] = _macro(aucs)
    return out


def _confusion_cells(labels: Ints, pred: Ints, k: int) -> tuple[Floats, ...]:
    """TP, FP, FN, TN of every class (columns) for every draw (rows), by one bincount."""
    draws, n = labels.shape
    cells = (np.arange(draws)[:, None] * k * k + labels * k + pred[None, :]).ravel()
    e = np.bincount(cells, minlength=draws * k * k).reshape(draws, k, k).astype(np.float64)
    tp = np.diagonal(e, axis1=1, axis2=2)
    fp, fn = e.sum(axis=1) - tp, e.sum(axis=2) - tp
    return tp, fp, fn, n - tp - fp - fn


def _binary_cells(hits: np.ndarray, predicted: np.ndarray, n: int) -> tuple[Floats, ...]:
    """TP, FP, FN, TN of the positive class for every draw (rows of ``hits``), as (draws,
    1) columns: two matrix-vector products instead of one bincount over draws x rows."""
    w = hits.astype(np.float64)
    tp = (w @ predicted.astype(np.float64))[:, None]
    positives = w.sum(axis=1)[:, None]
    fp = float(np.count_nonzero(predicted)) - tp
    fn = positives - tp
    return tp, fp, fn, n - tp - fp - fn


def _macro(values: Floats) -> Floats:
    """Per row, the mean of the finite values (NaN when none), as :func:`estimated_figures`."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    out: Floats = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    return out


def _drawn_spread(
    p: Floats, pred: Ints, scores: Floats, positive: int | None, seed: int
) -> dict[str, float]:
    """Standard deviation of each realized figure over ``DRAWS`` label sets drawn from the
    calibrated probabilities (on at most ``DRAW_ROWS`` rows, scaled to the window's size)."""
    rng = np.random.default_rng(seed)
    n = pred.size
    if n > DRAW_ROWS:
        rows = rng.choice(n, DRAW_ROWS, replace=False)
        p, pred, scores = p[rows], pred[rows], scores[rows]
    cumulative = np.cumsum(p, axis=1)
    # The same stream as one rng.random(rows) per draw, drawn at once.
    u = rng.random((DRAWS, pred.size))
    labels = (u[:, :, None] > cumulative[None, :, :-1]).sum(axis=2)
    figures = _drawn_figures(labels, pred, scores, positive, p.shape[1])
    scale = math.sqrt(pred.size / n)
    return {k: float(np.nanstd(v, ddof=1)) * scale for k, v in figures.items()}


def _estimate(ctx: EvalContext) -> Estimate:
    baseline = ctx.baseline
    if baseline is None:
        raise Unavailable(Status.NO_BASELINE, "no baseline", ctx.window.height)
    rows = rows_of(ctx, ctx.window)
    n = rows.pred.size
    if n < max(ctx.min_samples, 1):
        detail = f"{n} usable rows, fewer than the minimum {ctx.min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)
    positive = _positive(ctx)
    estimator = learnt.cached(baseline, ("cbpe", positive), lambda: _fit(ctx, baseline))
    size, seed = learnt.size_bucket(n), int(ctx.option("seed", 0))

    def learn() -> dict[Hashable, learnt.Band]:
        labelled = baseline.filter(pl.col("label").is_not_null())
        chunks = learnt.reference_chunks(labelled, size, seed)
        return learnt.learn_bands(chunks, lambda chunk: _realized(ctx, chunk))

    bands = learnt.cached(baseline, ("cbpe bands", positive, size, seed), learn)
    p = estimator.calibration.apply(rows.proba, positive)
    figures = estimated_figures(p, rows.pred, rows.proba, positive)
    labelled = rows.y >= 0
    realized: dict[Hashable, float] = {}
    if labelled.any():
        onehot = np.zeros_like(rows.proba[labelled])
        onehot[np.arange(onehot.shape[0]), rows.y[labelled]] = 1.0
        pred, scores = rows.pred[labelled], rows.proba[labelled]
        realized.update(estimated_figures(onehot, pred, scores, positive))
    notes = [estimator.calibration.describe()]
    if rows.left_out:
        notes.append(f"{rows.left_out} rows without a usable score or prediction left out")
    spread = _drawn_spread(p, rows.pred, rows.proba, positive, seed)
    return Estimate(figures, realized, bands, spread, n, "; ".join(notes))


class _Estimated(Metric):
    family: ClassVar[Family] = Family.ESTIMATION
    tasks: ClassVar[frozenset[Task]] = frozenset({Task.BINARY, Task.MULTICLASS})
    figure: ClassVar[str]

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        label = None if self.figure == "accuracy" or _positive(ctx) is not None else "macro"
        try:
            settings = interval_settings(ctx.options)
            sigmas = ctx.option("sigmas", 3.0)
            threshold = _threshold(ctx.option("threshold", None))
            if isinstance(sigmas, bool) or not isinstance(sigmas, int | float) or not sigmas > 0:
                raise Unavailable(Status.ERROR, f"option 'sigmas' must be positive: {sigmas!r}")
            est = ctx.memoised("cbpe estimate", ctx.window, lambda: _estimate(ctx))
        except Unavailable as skip:
            return [self.unavailable(skip, label=label)]
        value = est.figures[self.figure]
        if not math.isfinite(value):
            why = "undefined in this window (no expected positives or negatives)"
            return [self.status_only(Status.NOT_APPLICABLE, est.n, why, label=label)]
        details = [est.detail]
        fields: dict[str, float | None] = {}
        band = est.bands.get(self.figure)
        status = Status.OK
        if band is not None:
            chunks = band.spread * math.sqrt(band.size / est.n)
            half = settings.z * max(chunks, est.spread.get(self.figure, 0.0))
            fields = {"ci_low": max(0.0, value - half), "ci_high": min(1.0, value + half)}
            low, high = band.edges(est.n, sigmas, 0.0, 1.0)
            if threshold is None:
                fields |= {"band_low": low, "band_high": high}
                status = Status.BREACH if not low <= value <= high else Status.OK
            details.append(f"band [{low:.4g}, {high:.4g}] from {band.how}")
        if threshold is not None:
            fields["threshold"] = threshold
            status = Status.BREACH if value < threshold else Status.OK
        real = est.realized.get(self.figure)
        if real is not None and math.isfinite(real):
            details.append(f"realized {real:.4f}, estimate's error {value - real:+.4f}")
        return [
            self.result(
                value, est.n, label=label, status=status, detail="; ".join(details), **fields
            )
        ]


def _threshold(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unavailable(Status.ERROR, f"option 'threshold' must be a number, got {value!r}")
    return float(value)


@register
class EstimatedAccuracy(_Estimated):
    key = "estimated_accuracy"
    description = "accuracy expected from the calibrated scores, no labels needed (CBPE)"
    figure = "accuracy"


@register
class EstimatedPrecision(_Estimated):
    key = "estimated_precision"
    description = "precision expected from the calibrated scores (CBPE)"
    figure = "precision"


@register
class EstimatedRecall(_Estimated):
    key = "estimated_recall"
    description = "recall expected from the calibrated scores (CBPE)"
    figure = "recall"


@register
class EstimatedF1(_Estimated):
    key = "estimated_f1"
    description = "F1 expected from the calibrated scores (CBPE)"
    figure = "f1"


@register
class EstimatedSpecificity(_Estimated):
    key = "estimated_specificity"
    description = "specificity expected from the calibrated scores (CBPE)"
    figure = "specificity"


@register
class EstimatedRocAuc(_Estimated):
    key = "estimated_roc_auc"
    description = "ROC AUC expected from the calibrated scores (NannyML's CBPE estimate)"
    figure = "roc_auc"
