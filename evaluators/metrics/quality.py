"""Data-quality metrics (issue 3): missing values, out-of-range values, unseen categories,
schema violations, constant columns and volume.

Per-feature metrics give one result per feature (``column`` = the feature name),
restricted by the optional ``features`` option (a list of names). A feature absent
from the frame gives ``error``. Shares carry a Wilson score CI at option ``confidence``
(default 0.95). NaN in a numeric column counts as missing; ±inf is a value (and lies
outside any finite range).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Collection, Mapping
from typing import Any

import polars as pl

from evaluators.base import (
    EvalContext,
    Family,
    Metric,
    MetricResult,
    Status,
    Unavailable,
    frame_column,
    interval_settings,
    register,
)
from evaluators.intervals import wilson
from modelwatch.domain import FeatureSpec, FeatureType

__all__ = [
    "ConstantColumns",
    "MissingRate",
    "OutOfRange",
    "SchemaViolations",
    "UnseenCategories",
    "Volume",
]

_MAX_LISTED = 5


def present(series: pl.Series) -> pl.Series:
    """The non-missing values: nulls dropped, and NaN too in float columns."""
    if series.dtype.is_float():
        series = series.fill_nan(None)
    return series.drop_nulls()


def share_interval(hits: int, n: int, options: Mapping[str, Any]) -> tuple[float, float]:
    """Wilson score interval of ``hits / n`` at option ``confidence`` (default 0.95)."""
    confidence = interval_settings(options, n).confidence
    low, high = wilson(hits, n, confidence)
    return float(low), float(high)


def threshold_option(options: Mapping[str, Any], name: str = "threshold") -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise Unavailable(Status.ERROR, f"option {name!r} must be a number, got {value!r}")
    return float(value)


class _PerFeature(Metric):
    """One result per feature of ``types``; subclasses compute one feature."""

    types: frozenset[FeatureType] = frozenset(FeatureType)
    needs_baseline = False

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        wanted: Collection[str] | None = ctx.option("features", None)
        if isinstance(wanted, str):
            wanted = [wanted]
        features = [
            f
            for f in ctx.spec.features
            if f.type in self.types and (wanted is None or f.name in wanted)
        ]
        return [self._one(ctx, feature) for feature in features]

    def _one(self, ctx: EvalContext, feature: FeatureSpec) -> MetricResult:
        try:
            return self._checked(ctx, feature)
        except Unavailable as skip:
            return self.unavailable(skip, column=feature.name)

    def _checked(self, ctx: EvalContext, feature: FeatureSpec) -> MetricResult:
        n = ctx.window.height
        if n == 0 or n < ctx.min_samples:
            raise Unavailable(Status.INSUFFICIENT_DATA, f"{n} rows, minimum {ctx.min_samples}", n)
        column = frame_column(ctx.window, feature.name)
        if column is None:
            raise Unavailable(Status.ERROR, f"feature {feature.name!r} is not in the window", n)
        reference = None
        if self.needs_baseline:
            reference = self._reference(ctx, feature.name, n)
        return self.feature(ctx, feature, ctx.window[column], reference)

    @staticmethod
    def _reference(ctx: EvalContext, name: str, n: int) -> pl.Series:
        if ctx.baseline is None:
            raise Unavailable(Status.NO_BASELINE, "no reference for this version", n)
        column = frame_column(ctx.baseline, name)
        values = present(ctx.baseline[column]) if column is not None else None
        if values is None or values.len() == 0:
            raise Unavailable(Status.NO_BASELINE, f"the reference has no values of {name!r}", n)
        return values

    @abstractmethod
    def feature(
        self, ctx: EvalContext, feature: FeatureSpec, values: pl.Series, ref: pl.Series | None
    ) -> MetricResult: ...

    def share(self, ctx: EvalContext, feature: str, hits: int, n: int, detail: str) -> MetricResult:
        """A share ``hits / n`` with its Wilson CI, in breach above option ``threshold``."""
        threshold = threshold_option(ctx.options)
        value = hits / n
        low, high = share_interval(hits, n, ctx.options)
        breach = threshold is not None and value > threshold
        return self.result(
            value,
            n,
            status=Status.BREACH if breach else Status.OK,
            column=feature,
            ci_low=low,
            ci_high=high,
            threshold=threshold,
            detail=detail,
        )


def _sufficient(values: pl.Series, ctx: EvalContext) -> int:
    n = values.len()
    if n == 0 or n < ctx.min_samples:
        detail = f"{n} non-missing values, minimum {ctx.min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)
    return n


@register
class MissingRate(_PerFeature):
    """Share of the window's rows where a feature is missing (null, or NaN if numeric).

    Per feature (all types); ``n`` = rows in the window; CI: Wilson. Option
    ``threshold``: status ``breach`` when the share is above it (no threshold: ok).
    """

    key = "missing_rate"
    family = Family.QUALITY
    description = "share of null values per feature"

    def feature(
        self, ctx: EvalContext, feature: FeatureSpec, values: pl.Series, ref: pl.Series | None
    ) -> MetricResult:
        n = values.len()
        missing = n - present(values).len()
        return self.share(ctx, feature.name, missing, n, f"{missing} of {n} missing")


@register
class OutOfRange(_PerFeature):
    """Share of a numeric feature's values outside the reference's ``[min, max]``.

    The range is over the reference's finite values; the share is over the window's
    non-missing values (``n``), ±inf counting as outside. CI: Wilson. Option
    ``threshold``: ``breach`` above it. No reference (or one without values of the
    feature) → ``no_baseline``; no non-missing values or fewer than ``min_samples``
    → ``insufficient_data``.
    """

    key = "out_of_range"
    family = Family.QUALITY
    description = "share of numeric values outside the reference range"
    types = frozenset({FeatureType.NUMERIC})
    needs_baseline = True

    def feature(
        self, ctx: EvalContext, feature: FeatureSpec, values: pl.Series, ref: pl.Series | None
    ) -> MetricResult:
        assert ref is not None
        ref = ref.cast(pl.Float64, strict=False)
        ref = ref.filter(ref.is_finite())
        if ref.len() == 0:
            raise Unavailable(Status.NO_BASELINE, "the reference has no finite values")
        window = present(values.cast(pl.Float64, strict=False))
        n = _sufficient(window, ctx)
        low, high = float(ref.min()), float(ref.max())  # type: ignore[arg-type]
        below, above = int((window < low).sum()), int((window > high).sum())
        detail = f"reference range [{low:g}, {high:g}]: {below} below, {above} above"
        return self.share(ctx, feature.name, below + above, n, detail)


@register
class UnseenCategories(_PerFeature):
    """Share of a categorical/boolean feature's values never seen in the reference.

    Over the window's non-null values (``n``; nulls belong to ``missing_rate``);
    values compare as strings. ``detail`` lists up to 5 unseen values, most frequent
    first. CI: Wilson. Option ``threshold``: ``breach`` above it. No reference
    → ``no_baseline``; fewer than ``min_samples`` values → ``insufficient_data``.
    """

    key = "unseen_categories"
    family = Family.QUALITY
    description = "share of categorical values absent from the reference"
    types = frozenset({FeatureType.CATEGORICAL, FeatureType.BOOLEAN})
    needs_baseline = True

    def feature(
        self, ctx: EvalContext, feature: FeatureSpec, values: pl.Series, ref: pl.Series | None
    ) -> MetricResult:
        assert ref is not None
        window = present(values).cast(pl.String)
        n = _sufficient(window, ctx)
        unseen = window.filter(~window.is_in(ref.cast(pl.String).unique().implode()))
        counts = unseen.value_counts(sort=True, name="count")
        counts = counts.sort(["count", counts.columns[0]], descending=[True, False])
        listed = counts.head(_MAX_LISTED).get_column(counts.columns[0]).to_list()
        detail = f"{counts.height} distinct unseen" + (
            f", most frequent: {listed}" if listed else ""
        )
        return self.share(ctx, feature.name, unseen.len(), n, detail)


@register
class ConstantColumns(_PerFeature):
    """Whether a feature is constant in the window: value 1.0 when it has at most one
    distinct non-missing value (all missing counts as constant), else 0.0.

    Per feature (all types); ``n`` = rows in the window. Status ``breach`` when the
    column is constant but the reference has more than one distinct value; ``ok``
    when it is not constant or the reference is constant too; ``no_baseline`` (value
    still given) when it is constant and there is no reference to compare with.
    """

    key = "constant_columns"
    family = Family.QUALITY
    description = "features with at most one distinct value in the window"

    def feature(
        self, ctx: EvalContext, feature: FeatureSpec, values: pl.Series, ref: pl.Series | None
    ) -> MetricResult:
        n = values.len()
        distinct = present(values).unique()
        if distinct.len() > 1:
            return self.result(0.0, n, column=feature.name, detail=f"{distinct.len()} values")
        detail = f"single value {distinct[0]!r}" if distinct.len() else "all missing"
        try:
            reference = self._reference(ctx, feature.name, n)
        except Unavailable as skip:
            return self.result(1.0, n, column=feature.name, status=skip.status, detail=detail)
        varied = reference.n_unique() > 1
        detail += "; the reference varies" if varied else "; constant in the reference too"
        status = Status.BREACH if varied else Status.OK
        return self.result(1.0, n, column=feature.name, status=status, detail=detail)


@register
class SchemaViolations(Metric):
    """Share of the version's events in the window that the collector rejected.

    value = ``rejected / (rejected + stored)``: ``rejected`` is
    ``ctx.options["rejected_events"]`` (supplied by the runner: events of this
    version rejected by schema validation in the window; absent → 0) and ``stored``
    the window's rows; ``n`` = rejected + stored. CI: Wilson. Option
    ``threshold``: ``breach`` above it. n = 0 or below ``min_samples`` →
    ``insufficient_data``; a malformed count → ``error``.
    """

    key = "schema_violations"
    family = Family.QUALITY
    description = "share of events rejected by schema validation"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        try:
            return [self._share(ctx)]
        except Unavailable as skip:
            return [self.unavailable(skip)]

    def _share(self, ctx: EvalContext) -> MetricResult:
        stored = ctx.window.height
        rejected = _count_option(ctx.options, "rejected_events")
        n = rejected + stored
        if n == 0 or n < ctx.min_samples:
            raise Unavailable(Status.INSUFFICIENT_DATA, f"{n} events, minimum {ctx.min_samples}", n)
        threshold = threshold_option(ctx.options)
        low, high = share_interval(rejected, n, ctx.options)
        value = rejected / n
        status = Status.BREACH if threshold is not None and value > threshold else Status.OK
        detail = f"{rejected} rejected, {stored} stored"
        return self.result(
            value, n, status=status, ci_low=low, ci_high=high, threshold=threshold, detail=detail
        )


def _count_option(options: Mapping[str, Any], name: str) -> int:
    value = options.get(name) or 0
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or value < 0 or value != int(value):
        raise Unavailable(Status.ERROR, f"option {name!r} must be a count, got {value!r}")
    return int(value)


@register
class Volume(Metric):
    """Events in the window (model-level; value = ``n`` = rows).

    ``ctx.options["expected_volume"]`` (supplied by the runner from previous windows
    or the reference) and ``tolerance`` (default 0.5, i.e. ±50%): status ``breach``
    when the count is outside ``expected * (1 ± tolerance)``. No expected volume →
    ``ok`` with a detail saying so. ``min_samples`` does not apply: an empty window
    is the strongest volume signal there is, so it is measured, not skipped.
    """

    key = "volume"
    family = Family.QUALITY
    description = "events per window against the expected volume"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        n = ctx.window.height
        try:
            expected = threshold_option(ctx.options, "expected_volume")
            tolerance = threshold_option(ctx.options, "tolerance")
        except Unavailable as skip:
            return [self.status_only(skip.status, n, skip.detail)]
        tolerance = 0.5 if tolerance is None else tolerance
        if expected is None:
            return [self.result(float(n), n, detail="no expected volume yet")]
        if expected < 0 or tolerance < 0 or math.isinf(expected):
            detail = f"bad expected volume {expected!r} or tolerance {tolerance!r}"
            return [self.status_only(Status.ERROR, n, detail)]
        low, high = expected * (1 - tolerance), expected * (1 + tolerance)
        status = Status.BREACH if not low <= n <= high else Status.OK
        detail = f"expected {expected:g} ± {tolerance:.0%}: [{low:g}, {high:g}]"
        return [self.result(float(n), n, status=status, detail=detail)]
