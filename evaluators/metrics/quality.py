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
import weakref
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
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
from evaluators.intervals import IntervalSettings, wilson
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


@dataclass(frozen=True)
class _Share:
    """A share ``hits / n`` still to be given its interval and judged."""

    hits: int
    n: int
    detail: str


Finish = Callable[[list[Any]], "MetricResult | _Share"]


@dataclass(frozen=True)
class _Plan:
    """One feature's aggregations over the window, and what turns their values into a result."""

    exprs: list[pl.Expr]
    finish: Finish


class _PerFeature(Metric):
    """One result per feature of ``types``. Subclasses plan each feature's aggregations;
    the window is read once, in one polars ``select`` over every feature, so the cost
    of a small window is not paid per column."""

    types: frozenset[FeatureType] = frozenset(FeatureType)

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        wanted: Collection[str] | None = ctx.option("features", None)
        if isinstance(wanted, str):
            wanted = [wanted]
        features = [
            f
            for f in ctx.spec.features
            if f.type in self.types and (wanted is None or f.name in wanted)
        ]
        schema = ctx.window.schema  # built on every access: once, not once per feature
        plans = {f.name: self._planned(ctx, f, schema) for f in features}
        exprs = [e for p in plans.values() if isinstance(p, _Plan) for e in p.exprs]
        row = list(ctx.window.select(exprs).row(0)) if exprs else []
        done: dict[str, MetricResult | _Share] = {}
        for name, plan in plans.items():
            if isinstance(plan, _Plan):
                values, row = row[: len(plan.exprs)], row[len(plan.exprs) :]
                done[name] = self._finished(plan, values, name)
            else:
                done[name] = plan
        shares = self._shares(ctx, {k: v for k, v in done.items() if isinstance(v, _Share)})
        return [_final(done[f.name], shares, f.name) for f in features]

    def _planned(
        self, ctx: EvalContext, feature: FeatureSpec, schema: pl.Schema
    ) -> _Plan | MetricResult:
        n = ctx.window.height
        try:
            if n == 0 or n < ctx.min_samples:
                detail = f"{n} rows, minimum {ctx.min_samples}"
                raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)
            column = frame_column(ctx.window, feature.name)
            if column is None:
                raise Unavailable(Status.ERROR, f"feature {feature.name!r} is not in the window", n)
            plan = self.plan(ctx, feature, column, schema[column])
            return _Plan(
                [e.alias(f"{feature.name}\0{i}") for i, e in enumerate(plan.exprs)], plan.finish
            )
        except Unavailable as skip:
            return self.unavailable(skip, column=feature.name)

    def _finished(self, plan: _Plan, values: list[Any], name: str) -> MetricResult | _Share:
        try:
            return plan.finish(values)
        except Unavailable as skip:
            return self.unavailable(skip, column=name)

    @abstractmethod
    def plan(
        self, ctx: EvalContext, feature: FeatureSpec, column: str, dtype: pl.DataType
    ) -> _Plan:
        """Aggregations of ``column`` (each one value) and how to finish; may raise Unavailable."""

    def _shares(self, ctx: EvalContext, shares: dict[str, _Share]) -> dict[str, MetricResult]:
        """Every share with its Wilson CI (one vectorised call), in breach above option
        ``threshold``."""
        if not shares:
            return {}
        try:
            threshold = threshold_option(ctx.options)
        except Unavailable as skip:
            return {name: self.unavailable(skip, column=name) for name in shares}
        try:
            confidence = IntervalSettings.from_options(ctx.options).confidence
        except ValueError as exc:
            detail = str(exc)
            return {
                k: self.status_only(Status.ERROR, s.n, detail, column=k) for k, s in shares.items()
            }
        hits = np.array([s.hits for s in shares.values()])
        lows, highs = wilson(hits, np.array([s.n for s in shares.values()]), confidence)
        return {
            name: self._share(s, threshold, float(low), float(high), name)
            for (name, s), low, high in zip(shares.items(), lows, highs, strict=True)
        }

    def _share(
        self, share: _Share, threshold: float | None, low: float, high: float, name: str
    ) -> MetricResult:
        value = share.hits / share.n
        breach = threshold is not None and value > threshold
        return self.result(
            value,
            share.n,
            status=Status.BREACH if breach else Status.OK,
            column=name,
            ci_low=low,
            ci_high=high,
            threshold=threshold,
            detail=share.detail,
        )


def _final(item: MetricResult | _Share, shares: dict[str, MetricResult], name: str) -> MetricResult:
    return shares[name] if isinstance(item, _Share) else item


def _present(column: str, dtype: pl.DataType) -> pl.Expr:
    """:func:`present` as an expression (nulls stay: aggregations skip them)."""
    expr = pl.col(column)
    return expr.fill_nan(None) if dtype.is_float() else expr


def _sufficient(n: int, ctx: EvalContext) -> int:
    if n == 0 or n < ctx.min_samples:
        detail = f"{n} non-missing values, minimum {ctx.min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)
    return n


_CACHES: dict[int, dict[tuple[str, str], Any]] = {}  # by id of a live baseline frame


def _cached(baseline: pl.DataFrame, key: tuple[str, str], make: Callable[[], Any]) -> Any:
    """What is learnt from a baseline column, kept while the frame lives (frames are treated
    as immutable), so that every window checked against one reference reuses it."""
    cache = _CACHES.get(id(baseline))
    if cache is None:
        cache = _CACHES.setdefault(id(baseline), {})
        weakref.finalize(baseline, _CACHES.pop, id(baseline), None)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _reference(ctx: EvalContext, name: str, n: int) -> pl.Series:
    """The reference's non-missing values of feature ``name``; Unavailable(no_baseline) if none."""
    baseline = ctx.baseline
    if baseline is None:
        raise Unavailable(Status.NO_BASELINE, "no reference for this version", n)

    def values() -> pl.Series | None:
        column = frame_column(baseline, name)
        return present(baseline[column]) if column is not None else None

    found: pl.Series | None = _cached(baseline, ("present", name), values)
    if found is None or found.len() == 0:
        raise Unavailable(Status.NO_BASELINE, f"the reference has no values of {name!r}", n)
    return found


@register
class MissingRate(_PerFeature):
    """Share of the window's rows where a feature is missing (null, or NaN if numeric).

    Per feature (all types); ``n`` = rows in the window; CI: Wilson. Option
    ``threshold``: status ``breach`` when the share is above it (no threshold: ok).
    """

    key = "missing_rate"
    family = Family.QUALITY
    description = "share of null values per feature"

    def plan(
        self, ctx: EvalContext, feature: FeatureSpec, column: str, dtype: pl.DataType
    ) -> _Plan:
        n = ctx.window.height

        def finish(values: list[Any]) -> _Share:
            missing = int(values[0])
            return _Share(missing, n, f"{missing} of {n} missing")

        return _Plan([_present(column, dtype).null_count()], finish)


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

    def plan(
        self, ctx: EvalContext, feature: FeatureSpec, column: str, dtype: pl.DataType
    ) -> _Plan:
        ref = _reference(ctx, feature.name, ctx.window.height)
        assert ctx.baseline is not None
        limits = _cached(ctx.baseline, ("range", feature.name), lambda: _finite_range(ref))
        if limits is None:
            raise Unavailable(Status.NO_BASELINE, "the reference has no finite values")
        low, high = limits
        window = pl.col(column).cast(pl.Float64, strict=False).fill_nan(None)

        def finish(values: list[Any]) -> _Share:
            n = _sufficient(int(values[0]), ctx)
            below, above = int(values[1] or 0), int(values[2] or 0)
            detail = f"reference range [{low:g}, {high:g}]: {below} below, {above} above"
            return _Share(below + above, n, detail)

        return _Plan([window.count(), (window < low).sum(), (window > high).sum()], finish)


def _finite_range(ref: pl.Series) -> tuple[float, float] | None:
    ref = ref.cast(pl.Float64, strict=False)
    ref = ref.filter(ref.is_finite())
    if ref.len() == 0:
        return None
    return float(ref.min()), float(ref.max())  # type: ignore[arg-type]


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

    def plan(
        self, ctx: EvalContext, feature: FeatureSpec, column: str, dtype: pl.DataType
    ) -> _Plan:
        ref = _reference(ctx, feature.name, ctx.window.height)
        assert ctx.baseline is not None
        seen = _cached(
            ctx.baseline, ("categories", feature.name), lambda: ref.cast(pl.String).unique()
        )
        window = _present(column, dtype).cast(pl.String)

        def finish(values: list[Any]) -> _Share:
            n = _sufficient(int(values[0]), ctx)
            unseen = int(values[1] or 0)
            return _Share(
                unseen,
                n,
                _unseen_detail(ctx.window[column], seen) if unseen else "0 distinct unseen",
            )

        return _Plan([window.count(), (~window.drop_nulls().is_in(seen.implode())).sum()], finish)


def _unseen_detail(values: pl.Series, seen: pl.Series) -> str:
    """How many distinct values are unseen, and the most frequent of them."""
    window = present(values).cast(pl.String)
    unseen = window.filter(~window.is_in(seen.implode()))
    counts = unseen.value_counts(sort=True, name="count")
    counts = counts.sort(["count", counts.columns[0]], descending=[True, False])
    listed = counts.head(_MAX_LISTED).get_column(counts.columns[0]).to_list()
    return f"{counts.height} distinct unseen" + (f", most frequent: {listed}" if listed else "")


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

    def plan(
        self, ctx: EvalContext, feature: FeatureSpec, column: str, dtype: pl.DataType
    ) -> _Plan:
        n = ctx.window.height
        values = _present(column, dtype).drop_nulls()

        def finish(found: list[Any]) -> MetricResult:
            distinct, first = int(found[0]), found[1]
            if distinct > 1:
                return self.result(0.0, n, column=feature.name, detail=f"{distinct} values")
            return self._constant(
                ctx, feature.name, n, f"single value {first!r}" if distinct else "all missing"
            )

        return _Plan([values.n_unique(), values.first()], finish)

    def _constant(self, ctx: EvalContext, name: str, n: int, detail: str) -> MetricResult:
        try:
            reference = _reference(ctx, name, n)
        except Unavailable as skip:
            return self.result(1.0, n, column=name, status=skip.status, detail=detail)
        assert ctx.baseline is not None
        varied = _cached(ctx.baseline, ("varied", name), lambda: reference.n_unique() > 1)
        detail += "; the reference varies" if varied else "; constant in the reference too"
        status = Status.BREACH if varied else Status.OK
        return self.result(1.0, n, column=name, status=status, detail=detail)


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
