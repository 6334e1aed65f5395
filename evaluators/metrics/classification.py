"""Classification metrics for binary and multiclass models, each with n and an interval.

Rows count when their ``label`` has joined. Labels outside the model's classes and rows
without a prediction (for prediction metrics) or with a missing, non-finite or
out-of-[0, 1] score (for score metrics) are left out and counted in ``detail``. A
prediction outside the classes stays in: it is wrong for every class.

Conventions, matching scikit-learn where it has the figure:

- precision, recall, F1 follow ``zero_division=0``: a class never predicted has
  precision 0, a class never labelled has recall 0. Such a per-class figure is
  undefined, so its status is ``not_applicable`` (value 0, never a breach); macro
  averages include it as 0, as sklearn does. Macro averages run over the classes
  labelled or predicted in the window (sklearn's default ``labels=None``); classes
  absent from the window get ``not_applicable``.
- ROC AUC and PR AUC (average precision) are one-vs-rest for multiclass, macro over
  the classes present; a window with one class gives ``not_applicable``.
- log loss clips probabilities to ``[eps, 1 - eps]`` (float64 machine epsilon).
- Brier: binary ``mean((p - y)²)`` on the positive-class score; multiclass
  ``mean(Σ_k (p_k - y_k)²)`` over the score columns (Brier's original, range [0, 2]).
- calibration error: expected calibration error ``Σ_b (n_b/n)·|accuracy_b - confidence_b|``
  with ``n_bins`` equal-width bins as in ``sklearn.calibration.calibration_curve``
  (right-closed); on the positive-class score for binary, on the top-class score
  (correct when the arg-max class is the label) for multiclass.

Intervals (:mod:`evaluators.intervals`): Wilson for accuracy and per-class precision
and recall; DeLong for ROC AUC (macro: DeLong influences averaged over classes);
normal approximation of a mean for log loss and Brier; Poisson bootstrap for F1 and
macro precision and recall (over confusion cells), PR AUC and calibration error (over
rows). ``bootstrap: 0`` turns bootstrap intervals off.

Without a ``threshold``, headline figures are judged by the band learnt from the baseline's
chunks of the window's size (:mod:`evaluators.metrics.sampled`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from evaluators.base import EvalContext, Family, MetricResult, Status, register
from evaluators.intervals import (
    Floats,
    IntervalSettings,
    Ints,
    Statistic,
    bootstrap_interval,
    bounds,
    delong,
    macro_auc_variance,
    mean_interval,
    normal_interval,
    wilson,
)
from evaluators.metrics.sampled import SampledMetric
from modelwatch.domain import Task

__all__ = [
    "F1",
    "Accuracy",
    "Brier",
    "CalibrationError",
    "ConfusionMatrix",
    "LogLoss",
    "PrAuc",
    "Precision",
    "Recall",
    "RocAuc",
]

_TASKS = frozenset({Task.BINARY, Task.MULTICLASS})
T = TypeVar("T", bound=np.generic)
_EPS = float(np.finfo(np.float64).eps)
_SINGLE_CLASS = "only one class present"
_ABSENT = "class absent from the window (neither labelled nor predicted)"


@dataclass(frozen=True)
class _Window:
    """A classification window's usable rows, labels as class codes ``0..K-1``."""

    classes: tuple[str, ...]
    positive: int | None  # binary: the positive class's code
    y: Ints
    notes: tuple[str, ...]  # rows left out, and why

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def k(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Predicted(_Window):
    pred: Ints  # code K for a prediction outside the classes


@dataclass(frozen=True)
class Scored(_Window):
    proba: Floats  # (n, K): the score of every class (binary: 1 - score for the other)


# --- rows -------------------------------------------------------------------------


def _text(series: pl.Series) -> pl.Expr:
    """Class labels as their canonical strings (``normalize_class``), as one expression."""
    col = pl.col(series.name)
    if series.dtype == pl.String:
        return col
    if series.dtype.is_float():
        integral = col.is_finite() & (col == col.floor())
        return pl.when(integral).then(col.cast(pl.Int64, strict=False)).cast(pl.String)
    return col.cast(pl.String, strict=False)


# Up to this many rows, text labels are coded by numpy comparisons (0.04 ms for 1,000
# rows against 0.26 ms for polars' Enum cast, which wins on large windows).
SMALL_CODES = 20_000


def _codes(series: pl.Series, classes: tuple[str, ...]) -> Ints:
    """Class codes ``0..K-1``; -1 for null or a value outside the classes."""
    if series.dtype == pl.String and series.len() <= SMALL_CODES:
        values = series.to_numpy()
        small: Ints = np.full(values.size, -1, dtype=np.int64)
        for i, name in enumerate(classes):
            small[values == name] = i
        return small
    code = _text(series).cast(pl.Enum(list(classes)), strict=False).to_physical()
    codes = series.to_frame().select(code.cast(pl.Int64).fill_null(-1)).to_series()
    out: Ints = codes.to_numpy()
    return out


def _labels(ctx: EvalContext, rows: pl.DataFrame) -> tuple[Ints, Ints, list[str]]:
    """Label codes and the rows they keep (labels outside the classes are left out)."""
    classes = tuple(ctx.spec.class_list)
    y = _codes(rows["label"], classes)
    keep = np.flatnonzero(y >= 0)
    notes = []
    if keep.size < y.size:
        notes.append(f"{y.size - keep.size} rows with a label outside the classes left out")
    return y[keep], keep, notes


def _positive(ctx: EvalContext) -> int | None:
    spec = ctx.spec
    if spec.task is Task.BINARY and spec.positive_class is not None:
        return spec.class_list.index(spec.positive_class)
    return None


# --- metrics ----------------------------------------------------------------------


class _PredictionMetric(SampledMetric[Predicted]):
    family = Family.CLASSIFICATION
    tasks = _TASKS

    def sample(self, ctx: EvalContext, rows: pl.DataFrame) -> Predicted | MetricResult:
        if "prediction" not in rows.columns:
            return self.status_only(Status.NOT_APPLICABLE, 0, "the window has no predictions")
        return ctx.memoised("predicted", rows, lambda: _predicted(ctx, rows))


class _ScoreMetric(SampledMetric[Scored]):
    family = Family.CLASSIFICATION
    tasks = _TASKS

    def sample(self, ctx: EvalContext, rows: pl.DataFrame) -> Scored | MetricResult:
        classes = tuple(ctx.spec.class_list)
        positive = _positive(ctx)
        names = ["score"] if positive is not None else [f"score_{c}" for c in classes]
        missing = [c for c in names if c not in rows.columns or rows[c].null_count() == rows.height]
        if missing:
            detail = f"no scores: the model sends none ({', '.join(missing)} missing)"
            return self.status_only(Status.NOT_APPLICABLE, 0, detail)
        return ctx.memoised(("scored", *names), rows, lambda: _scored(ctx, rows, names))


def _predicted(ctx: EvalContext, rows: pl.DataFrame) -> Predicted:
    classes = tuple(ctx.spec.class_list)
    y, keep, notes = _labels(ctx, rows)
    prediction = rows["prediction"].gather(keep)
    pred = _codes(prediction, classes)
    has = ~prediction.is_null().to_numpy()
    if not has.all():
        notes.append(f"{int(np.count_nonzero(~has))} rows without a prediction left out")
    outside = int(np.count_nonzero(has & (pred < 0)))
    if outside:
        notes.append(f"{outside} predictions outside the classes counted as wrong")
    pred = np.where(pred < 0, len(classes), pred)
    return Predicted(classes, _positive(ctx), _frozen(y[has]), tuple(notes), _frozen(pred[has]))


def _scored(ctx: EvalContext, rows: pl.DataFrame, names: list[str]) -> Scored:
    classes, positive = tuple(ctx.spec.class_list), _positive(ctx)
    y, keep, notes = _labels(ctx, rows)
    scores = rows.select(pl.col(names).cast(pl.Float64, strict=False)).to_numpy()[keep]
    valid = np.all(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0), axis=1)
    if not valid.all():
        bad = int(np.count_nonzero(~valid))
        notes.append(f"{bad} rows with a missing, non-finite or out-of-[0, 1] score left out")
    proba = scores[valid] if positive is None else _two_columns(scores[valid, 0], positive)
    return Scored(classes, positive, _frozen(y[valid]), tuple(notes), _frozen(proba))


def _frozen(values: npt.NDArray[T]) -> npt.NDArray[T]:
    """Read-only: a sample is shared by every metric of a run (:meth:`EvalContext.memoised`)."""
    values.flags.writeable = False
    return values


def _two_columns(score: Floats, positive: int) -> Floats:
    """A binary model's positive-class score as both classes' probabilities."""
    proba = np.empty((score.size, 2))
    proba[:, positive] = score
    proba[:, 1 - positive] = 1.0 - score
    return proba


@register
class Accuracy(_PredictionMetric):
    key = "accuracy"
    description = "share of correct predictions; Wilson interval"

    def evaluate(
        self, w: Predicted, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        correct = int(np.count_nonzero(w.y == w.pred))
        low, high = wilson(correct, w.n, settings.confidence)
        return [self.result(correct / w.n, w.n, **bounds(low, high))]


@register
class ConfusionMatrix(_PredictionMetric):
    key = "confusion_matrix"
    description = "count of each (actual, predicted) cell, labelled 'actual|predicted'"
    higher_is_better = None

    def evaluate(
        self, w: Predicted, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        table = _confusion(w)
        return [
            self.result(float(table[a, p]), w.n, label=f"{actual}|{predicted}")
            for a, actual in enumerate(w.classes)
            for p, predicted in enumerate(w.classes)
        ]


def _confusion(w: Predicted) -> Ints:
    """Counts of shape (K, K + 1): rows actual, columns predicted (last: outside the classes)."""
    k = w.k
    return np.bincount(w.y * (k + 1) + w.pred, minlength=k * (k + 1)).reshape(k, k + 1)


def _ratio(num: Floats, den: Floats) -> Floats:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _prf(tables: Floats) -> tuple[Floats, Floats, Floats]:
    """Per-class precision, recall, F1 of confusion tables ``(..., K, K+1)``; 0 for 0/0."""
    k = tables.shape[-2]
    tp = np.diagonal(tables[..., :k], axis1=-2, axis2=-1)
    predicted = tables[..., :k].sum(axis=-2)
    actual = tables.sum(axis=-1)
    return _ratio(tp, predicted), _ratio(tp, actual), _ratio(2.0 * tp, predicted + actual)


class _PrecisionRecallF1(_PredictionMetric):
    """Binary: the positive class (label None); multiclass: ``macro``; then every class."""

    part: ClassVar[int]  # 0 precision, 1 recall, 2 F1
    undefined: ClassVar[str] = ""  # detail for a class whose denominator is 0

    def evaluate(
        self, w: Predicted, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        table = _confusion(w)
        k = w.k
        tp, predicted, actual = np.diagonal(table), table[:, :k].sum(axis=0), table.sum(axis=1)
        n = (predicted, actual, predicted + actual - tp)[self.part]  # rows behind each figure
        values = _prf(table.astype(np.float64))[self.part]
        present = predicted + actual > 0
        statistic = _prf_statistic(self.part, k, present)
        boot_low, boot_high = bootstrap_interval(statistic, table.ravel(), settings)
        low, high = (boot_low[1:], boot_high[1:])
        if self.part < 2:
            low, high = wilson(tp, n, settings.confidence)
        per_class = [
            self._one(w.classes[i], values[i], int(n[i]), low[i], high[i], bool(present[i]))
            for i in range(k)
        ]
        if w.positive is not None:
            return [replace(per_class[w.positive], label=None), *per_class]
        macro = float(np.mean(values[present]))
        head = self.result(macro, w.n, label="macro", **bounds(boot_low[0], boot_high[0]))
        return [head, *per_class]

    def _one(
        self, label: str, value: float, n: int, low: float, high: float, present: bool
    ) -> MetricResult:
        if not present:
            return self.status_only(Status.NOT_APPLICABLE, 0, _ABSENT, label=label)
        if n == 0:
            return self.result(
                0.0, 0, status=Status.NOT_APPLICABLE, label=label, detail=self.undefined
            )
        return self.result(float(value), n, label=label, **bounds(low, high))


def _prf_statistic(part: int, k: int, present: npt.NDArray[np.bool_]) -> Statistic:
    def statistic(weights: Floats) -> Floats:
        values = _prf(weights.reshape(-1, k, k + 1))[part]
        return np.column_stack([values[:, present].mean(axis=1), values])

    return statistic


_ZERO_DIVISION = "0 by sklearn's zero_division=0 convention, undefined so never a breach"


@register
class Precision(_PrecisionRecallF1):
    key = "precision"
    description = "precision per class and positive/macro; Wilson (macro: bootstrap)"
    part = 0
    undefined = f"class never predicted: {_ZERO_DIVISION}"


@register
class Recall(_PrecisionRecallF1):
    key = "recall"
    description = "recall per class and positive/macro; Wilson (macro: bootstrap)"
    part = 1
    undefined = f"class never labelled: {_ZERO_DIVISION}"


@register
class F1(_PrecisionRecallF1):
    key = "f1"
    description = "F1 per class and positive/macro; bootstrap over confusion cells"
    part = 2


@register
class RocAuc(_ScoreMetric):
    key = "roc_auc"
    description = "ROC AUC (multiclass: one-vs-rest macro and per class); DeLong interval"

    def evaluate(
        self, w: Scored, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        if w.positive is not None:
            fit = delong(w.y == w.positive, w.proba[:, w.positive], influence=False)
            if fit is None:
                return [self.status_only(Status.NOT_APPLICABLE, w.n, _SINGLE_CLASS)]
            return [self._auc(fit.auc, fit.variance, w.n, settings)]
        fits = [delong(w.y == i, w.proba[:, i]) for i in range(w.k)]
        usable = [f for f in fits if f is not None]
        if not usable:
            return [self.status_only(Status.NOT_APPLICABLE, w.n, _SINGLE_CLASS, label="macro")]
        macro = float(np.mean([f.auc for f in usable]))
        head = self._auc(macro, macro_auc_variance(usable), w.n, settings, label="macro")
        per_class = [
            self._auc(f.auc, f.variance, w.n, settings, label=c)
            if f is not None
            else self.status_only(Status.NOT_APPLICABLE, w.n, _UNLABELLED, label=c)
            for c, f in zip(w.classes, fits, strict=True)
        ]
        return [_over(head, len(usable), w.k), *per_class]

    def _auc(
        self,
        auc: float,
        variance: float,
        n: int,
        settings: IntervalSettings,
        label: str | None = None,
    ) -> MetricResult:
        se = math.sqrt(variance) if variance >= 0.0 else math.nan
        low, high = normal_interval(auc, se, settings.confidence, 0.0, 1.0)
        return self.result(auc, n, label=label, **bounds(low, high))


_UNLABELLED = "class not labelled in the window"


def _over(head: MetricResult, used: int, k: int) -> MetricResult:
    if used == k:
        return head
    return replace(head, detail=f"macro over the {used} of {k} classes labelled in the window")


@register
class PrAuc(_ScoreMetric):
    key = "pr_auc"
    description = "average precision (multiclass: one-vs-rest macro and per class); bootstrap"

    def evaluate(
        self, w: Scored, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        if np.unique(w.y).size < 2:
            label = None if w.positive is not None else "macro"
            return [self.status_only(Status.NOT_APPLICABLE, w.n, _SINGLE_CLASS, label=label)]
        wanted = [w.positive] if w.positive is not None else range(w.k)
        curves = {i: _precision_curve(w.y == i, w.proba[:, i]) for i in wanted if np.any(w.y == i)}
        statistic = _macro(list(curves.values()))
        values = statistic(np.ones((1, w.n)))[0]
        low, high = bootstrap_interval(statistic, w.n, settings)

        def figure(j: int, label: str | None) -> MetricResult:
            return self.result(float(values[j]), w.n, label=label, **bounds(low[j], high[j]))

        if w.positive is not None:
            return [figure(1, None)]
        column = {w.classes[i]: j + 1 for j, i in enumerate(curves)}
        per_class = [
            figure(column[c], c)
            if c in column
            else self.status_only(Status.NOT_APPLICABLE, w.n, _UNLABELLED, label=c)
            for c in w.classes
        ]
        return [_over(figure(0, "macro"), len(curves), w.k), *per_class]


Curve = tuple[Ints, Statistic]  # rows in the statistic's order, the statistic


def _precision_curve(positive: npt.NDArray[np.bool_], scores: Floats) -> Curve:
    """Weighted average precision ``sum_t (R_t - R_t-1) * P_t`` over distinct score
    thresholds (sklearn's ``average_precision_score``), for weights of rows sorted by
    descending score. Written per positive row (its weight times the precision at the
    end of its tie group), so only one pass runs over all rows."""
    order = np.argsort(-scores)
    ordered = scores[order]
    group_end = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1]
    group = np.cumsum(np.r_[0, ordered[1:] != ordered[:-1]])
    hits = np.flatnonzero(positive[order])  # positions of the positives
    seen_at = group_end[group[hits]]  # where each positive's tie group ends
    hits_at = np.searchsorted(hits, seen_at, side="right") - 1

    def statistic(weights: Floats) -> Floats:
        seen = np.cumsum(weights, axis=1)[:, seen_at]
        gained = weights[:, hits]
        tp = np.cumsum(gained, axis=1)
        precision = np.divide(tp[:, hits_at], seen, out=np.zeros_like(seen), where=seen > 0)
        return np.asarray(np.sum(gained * precision, axis=1) / tp[:, -1])

    return order, statistic


def _macro(curves: list[Curve]) -> Statistic:
    """Columns ``[mean, each curve]`` for weights in row order (one curve: its own order)."""

    def statistic(weights: Floats) -> Floats:
        if len(curves) == 1:  # i.i.d. weights: no need to lay them out in the curve's order
            values = curves[0][1](weights)[:, None]
        else:
            compact = _compact(weights)
            values = np.column_stack([stat(_gather(compact, order)) for order, stat in curves])
        return np.column_stack([values.mean(axis=1), values])

    return statistic


def _compact(weights: Floats) -> npt.NDArray[np.generic]:
    """Bootstrap counts as uint8 when they fit: gathers from 1 byte a row stay in cache."""
    return weights.astype(np.uint8) if weights.max() <= 255 else weights


def _gather(weights: npt.NDArray[np.generic], order: Ints) -> Floats:
    return np.take(weights, order, axis=1).astype(np.float64)


@register
class LogLoss(_ScoreMetric):
    key = "log_loss"
    description = "mean negative log-likelihood of the label; normal interval"
    higher_is_better = False
    value_range = (0.0, math.inf)

    def evaluate(
        self, w: Scored, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        p = np.clip(w.proba[np.arange(w.n), w.y], _EPS, 1.0 - _EPS)
        losses = -np.log(p)
        low, high = mean_interval(losses, settings.confidence, lo=0.0)
        return [self.result(float(np.mean(losses)), w.n, **bounds(low, high))]


@register
class Brier(_ScoreMetric):
    key = "brier"
    description = "Brier score (binary: positive score; multiclass: summed over classes)"
    higher_is_better = False
    value_range = (0.0, 2.0)

    def evaluate(
        self, w: Scored, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        # Σ_k (p_k - y_k)² = Σ_k p_k² - 2·p_label + 1, without an (n, K) one-hot matrix.
        squared = np.sum(w.proba**2, axis=1) - 2.0 * w.proba[np.arange(w.n), w.y] + 1.0
        top = 2.0
        if w.positive is not None:  # both columns carry the same error: (p - y)² twice
            squared, top = squared / 2.0, 1.0
        low, high = mean_interval(squared, settings.confidence, lo=0.0, hi=top)
        return [self.result(float(np.mean(squared)), w.n, **bounds(low, high))]


@register
class CalibrationError(_ScoreMetric):
    key = "calibration_error"
    description = "expected calibration error over equal-width bins; bootstrap"
    higher_is_better = False
    figure_options = ("n_bins",)

    def evaluate(
        self, w: Scored, settings: IntervalSettings, ctx: EvalContext
    ) -> list[MetricResult]:
        n_bins = _n_bins(ctx.options.get("n_bins", 10))
        if w.positive is not None:
            confidence, hit = w.proba[:, w.positive], w.y == w.positive
        else:
            confidence, hit = w.proba.max(axis=1), w.proba.argmax(axis=1) == w.y
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = np.searchsorted(edges[1:-1], confidence)  # right-closed, as calibration_curve
        statistic = _ece(bins, hit.astype(np.float64) - confidence)
        value = float(statistic(np.ones((1, w.n)))[0])
        low, high = bootstrap_interval(statistic, w.n, settings)
        return [self.result(value, w.n, **bounds(low[0], high[0]))]


def _n_bins(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option 'n_bins' must be a positive integer, got {value!r}")
    return value


def _ece(bins: Ints, gap: Floats) -> Statistic:
    """``sum_b |sum_i w_i (hit_i - conf_i)| / sum_i w_i`` over bins, which equals
    ``sum_b n_b/n * |accuracy_b - confidence_b|``; weights of rows grouped by bin."""
    order = np.argsort(bins, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(bins[order]) != 0])
    gap = gap[order]

    def statistic(weights: Floats) -> Floats:
        per_bin = np.add.reduceat(weights * gap, starts, axis=1)
        return np.asarray(np.abs(per_bin).sum(axis=1) / weights.sum(axis=1))

    return statistic
