"""Drift metrics: each feature, the prediction, the scores and the target of a window
against the baseline; the statistics are :mod:`evaluators.stattests`, the verdict over the
columns of a run :mod:`evaluators.metrics.drift_family`.

Keys ``ks``, ``chi2``, ``z``, ``psi``, ``wasserstein`` and ``jensenshannon`` run one method on
every column it applies to (ks, wasserstein: numeric; chi2, z: categorical; psi,
jensenshannon: both). ``data_drift`` tests every column (:func:`tested_method`: KS for
numeric columns with more than 5 values, else chi-square, or z for two values) and adds
the model-level ``drift_share``; ``method: evidently`` picks as evidently's default does
instead (:func:`default_method`: larger references than 1,000 values get the distances).

Tests (ks, chi2, z) have a p-value and an effect size: KS the Wasserstein distance over
std(reference) (from the same merge of the sorted samples), chi-square and z the total
variation distance (the share of traffic that moved between values). A tested column
drifts (``breach``) when its p-value, adjusted over every tested column of the run
(``correction``: ``holm``, ``bonferroni``, ``bh`` or ``none``), passes the threshold (KS
p ≤ threshold, chi-square and z p < threshold; default 0.001, family-wise) AND its effect
reaches ``min_effect`` (defaults: 0.1 for KS, 0.05 for chi2 and z). Distances (psi,
jensenshannon, wasserstein) have no p-value: they are threshold-only (distance ≥
threshold, default 0.1, evidently's rule) and outside the family. Why these defaults,
with their measured false-alarm rates and power: the README's Evaluating section and
``bench/drift_alarms.py``.

Columns: every feature of the spec (numeric → numeric tests; categorical and boolean →
categorical tests; text → ``not_applicable``), then ``prediction``, ``score`` /
``score_<class>`` and the target (frame column ``label``, reported as column ``target``)
when both frames have them, typed by their dtype.

Options: ``columns`` (names to restrict to), ``method`` (every column of ``data_drift``, or
``evidently``), ``methods`` ({column: method}; evidently's names ``chisquare`` and ``js``
are accepted), ``thresholds`` ({method: threshold}), ``threshold`` (every column),
``column_thresholds`` ({column: threshold}; precedence: column, all, method, default),
``correction`` (default ``holm``), ``min_effect`` (every test) and ``min_effects``
({method: floor}), ``n_bins`` (equal-width bins for PSI and Jensen-Shannon instead of
evidently's Sturges bins), ``drift_share`` (default 0.5) and ``workers`` (threads over
columns, for windows of 50,000 rows or more).

Results: value = the statistic, ``p_value`` (raw) and ``p_adjusted`` where the method is a
test, ``effect`` = its effect size, ``n`` = the window's values used, ``detail`` = the
method, then for tests the verdict (e.g. ``ks; significant (p_adj=2e-06, holm over 27),
effect 0.012 (normed wasserstein) below min_effect 0.1``). ``drift_share`` is the drifted
share of the features that could be evaluated, in breach when ≥ its threshold
(evidently's ``dataset_drift``).

Bad data: no baseline → one ``no_baseline`` result; fewer than ``min_samples`` values in
either frame → ``insufficient_data``; an unlabelled window → ``no_labels`` for the
target; a missing column, a numeric column of strings, an unknown method → ``error``.
NaN and ±inf are dropped, as evidently does, and ``detail`` says how many. As in
evidently, a constant reference divides the Wasserstein distance by 0.001, and a value
never seen in the reference makes the chi-square statistic inf with p = 0: the result
has no value (results are finite), p = 0, and drifts when the new value's share reaches
the effect floor; ``detail`` says so.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import polars as pl

from evaluators import stattests as st
from evaluators.base import (
    EvalContext,
    Family,
    Metric,
    MetricResult,
    Status,
    Unavailable,
    frame_column,
    register,
)
from evaluators.metrics.drift_family import Tested, correction_of, decide
from evaluators.metrics.drift_methods import (
    ALIASES,
    CATEGORICAL,
    EVIDENTLY,
    METHODS,
    NUMERIC,
    Method,
    default_method,
    tested_method,
)
from modelwatch.domain import FeatureType

__all__ = [
    "METHODS",
    "ChiSquareDrift",
    "DataDrift",
    "JensenShannonDrift",
    "KSDrift",
    "Method",
    "PSIDrift",
    "WassersteinDrift",
    "ZTestDrift",
    "default_method",
    "tested_method",
]

PARALLEL_MIN_ROWS = 50_000  # below this, threads cost more than they save
DEFAULT_WORKERS = min(os.cpu_count() or 1, 4)  # each busy thread holds ~40 MB per 1M rows


@dataclass(frozen=True)
class Column:
    """One column to check: its name in the frames, in results, and its kind (None: text)."""

    source: str
    name: str
    kind: str | None
    is_feature: bool = False


@dataclass(frozen=True)
class Reference:
    """A cleaned reference column, its profile and how many NaN/inf were dropped."""

    profile: st.ReferenceProfile
    dropped: int


# --- columns and cleaning -------------------------------------------------------------------

_KINDS = {
    FeatureType.NUMERIC: NUMERIC,
    FeatureType.CATEGORICAL: CATEGORICAL,
    FeatureType.BOOLEAN: CATEGORICAL,
    FeatureType.TEXT: None,
}


def columns_to_check(ctx: EvalContext, baseline: pl.DataFrame) -> list[Column]:
    columns = []
    for feature in ctx.spec.features:
        source = frame_column(ctx.window, feature.name, "feature") or feature.name
        columns.append(Column(source, feature.name, _KINDS[feature.type], is_feature=True))
    both = [c for c in ctx.window.columns if c in baseline.columns]
    scores = [c for c in both if c == "score" or c.startswith(("score_", "score:"))]
    for source in ["prediction", *scores, "label"]:
        if source in both:
            name = "target" if source == "label" else source
            kind = NUMERIC if ctx.window.schema[source].is_numeric() else CATEGORICAL
            columns.append(Column(source, name, kind))
    wanted = ctx.option("columns", None)
    if wanted is not None:
        wanted = {"target" if w == "label" else w for w in wanted}
        columns = [c for c in columns if c.name in wanted]
    return columns


def clean(series: pl.Series, kind: str) -> tuple[pl.Series, int]:
    """Nulls dropped; for numeric columns NaN and ±inf too (returned: how many of those)."""
    if series.null_count():
        series = series.drop_nulls()
    if kind == NUMERIC and not series.dtype.is_numeric():
        raise Unavailable(Status.ERROR, f"numeric column holds {series.dtype}")
    if not series.dtype.is_float():
        return series, 0
    finite = series.is_finite()
    if finite.all():
        return series, 0
    kept = series.filter(finite)
    return kept, series.len() - kept.len()


_PROFILES: dict[int, dict[tuple[str, str], Reference]] = {}  # by id of a live baseline frame


def reference_for(baseline: pl.DataFrame, column: Column) -> Reference:
    """The column's reference profile, cached while the baseline frame lives (frames are
    treated as immutable) so that every window and metric checked against it reuses it."""
    kind = column.kind or CATEGORICAL
    cache = _PROFILES.get(id(baseline))
    if cache is None:
        cache = _PROFILES.setdefault(id(baseline), {})
        weakref.finalize(baseline, _PROFILES.pop, id(baseline), None)
    key = (column.source, kind)
    if key not in cache:
        values, dropped = clean(baseline.get_column(column.source), kind)
        profile = st.ReferenceProfile(values, categorical=kind == CATEGORICAL)
        cache[key] = Reference(profile, dropped)
    return cache[key]


# --- the metrics ----------------------------------------------------------------------------


class _Drift(Metric):
    """Shared by every drift metric: one result per column; subclasses choose the method."""

    family: ClassVar[Family] = Family.DRIFT
    method: ClassVar[str | None] = None

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        if ctx.baseline is None:
            return [self.status_only(Status.NO_BASELINE, ctx.window.height, "no baseline")]
        try:
            return self.results(ctx, ctx.baseline)
        except Exception as exc:  # malformed options: reported, never raised
            detail = f"{type(exc).__name__}: {exc}"
            return [self.status_only(Status.ERROR, ctx.window.height, detail)]

    def results(self, ctx: EvalContext, baseline: pl.DataFrame) -> list[MetricResult]:
        return [result for _, result in self.results_by_column(ctx, baseline)]

    def results_by_column(
        self, ctx: EvalContext, baseline: pl.DataFrame
    ) -> list[tuple[Column, MetricResult]]:
        """Every column's result, the tested ones judged together (:mod:`.drift_family`)."""
        how = correction_of(ctx.option("correction", None))
        columns = [c for c in columns_to_check(ctx, baseline) if self.applies(c)]
        workers = int(ctx.option("workers", DEFAULT_WORKERS))
        if workers <= 1 or len(columns) <= 1 or ctx.window.height < PARALLEL_MIN_ROWS:
            items = [self.check(ctx, baseline, c) for c in columns]
        else:
            with ThreadPoolExecutor(
                min(workers, len(columns)), thread_name_prefix="mw-drift"
            ) as pool:
                items = list(pool.map(lambda c: self.check(ctx, baseline, c), columns))
        return list(zip(columns, decide(items, how), strict=True))

    def applies(self, column: Column) -> bool:
        if self.method is None:
            return True
        return column.kind is not None and column.kind in METHODS[self.method].kinds

    def chosen_method(self, ctx: EvalContext, column: Column) -> str | None:
        """The method asked for, :data:`EVIDENTLY`, or None for :func:`tested_method`."""
        return self.method

    def check(
        self, ctx: EvalContext, baseline: pl.DataFrame, column: Column
    ) -> MetricResult | Tested:
        try:
            return self._check(ctx, baseline, column)
        except Unavailable as skip:
            return self.unavailable(skip, column=column.name)
        except Exception as exc:  # a metric never raises on bad data
            detail = f"{type(exc).__name__}: {exc}"
            return self.status_only(Status.ERROR, 0, detail, column=column.name)

    def _check(
        self, ctx: EvalContext, baseline: pl.DataFrame, column: Column
    ) -> MetricResult | Tested:
        if column.kind is None:
            raise Unavailable(Status.NOT_APPLICABLE, "text columns have no drift test")
        if column.source not in ctx.window.columns or column.source not in baseline.columns:
            raise Unavailable(Status.ERROR, f"column {column.source!r} is missing from a frame")
        current, dropped = clean(ctx.window.get_column(column.source), column.kind)
        reference = reference_for(baseline, column)
        _require_samples(ctx, column, current, reference)
        method = self._method(ctx, column, reference.profile, current)
        statistic, p_value, effect = method.run(reference.profile, current, _n_bins(ctx))
        if math.isnan(statistic):  # values near the float limits overflow the arithmetic
            detail = f"{method.name}: the statistic is not a number (values too large?)"
            raise Unavailable(Status.ERROR, detail, current.len())
        if p_value is not None and math.isnan(p_value):  # chi2 over a single category: df 0
            p_value = None
        threshold = _threshold(ctx, column, method)
        finite = math.isfinite(statistic)  # chi2 over a value unseen in the reference: inf
        notes = ("" if finite else f"; statistic {statistic}") + _dropped_note(
            dropped, reference.dropped
        )
        result = self.result(
            statistic if finite else None,
            current.len(),
            column=column.name,
            p_value=p_value,
            threshold=threshold,
            effect=effect if effect is not None and math.isfinite(effect) else None,
        )
        if method.tested:
            floor = _min_effect(ctx, method)
            return Tested(result, method.rule, floor, method.effect or "", method.name, notes)
        drifted = method.rule(statistic, p_value, threshold)
        return replace(
            result, status=Status.BREACH if drifted else Status.OK, detail=method.name + notes
        )

    def _method(
        self, ctx: EvalContext, column: Column, profile: st.ReferenceProfile, current: pl.Series
    ) -> Method:
        chosen = self.chosen_method(ctx, column)
        if chosen is None:  # chi2/z may take few-valued numeric columns
            return METHODS[tested_method(profile, current)]
        if chosen == EVIDENTLY:
            return METHODS[default_method(profile, current)]
        method = METHODS[_resolve(chosen)]
        if column.kind not in method.kinds:
            raise Unavailable(
                Status.NOT_APPLICABLE, f"{method.name} is not for {column.kind} columns"
            )
        return method


def _require_samples(
    ctx: EvalContext, column: Column, current: pl.Series, reference: Reference
) -> None:
    labels = ctx.window.get_column(column.source) if column.source == "label" else None
    if labels is not None and labels.len() and labels.null_count() == labels.len():
        raise Unavailable(Status.NO_LABELS, "no ground truth in the window")
    minimum = max(ctx.min_samples, 1)
    if current.len() < minimum:
        raise Unavailable(
            Status.INSUFFICIENT_DATA, f"{current.len()} values in the window", current.len()
        )
    if reference.profile.n < minimum:
        detail = f"{reference.profile.n} values in the baseline"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, current.len())


def _resolve(name: Any) -> str:
    key = ALIASES.get(str(name), str(name))
    if key not in METHODS:
        raise Unavailable(
            Status.ERROR, f"unknown drift method {name!r}; known: {', '.join(METHODS)}"
        )
    return key


def _threshold(ctx: EvalContext, column: Column, method: Method) -> float:
    per_method: Mapping[str, Any] = ctx.option("thresholds", {}) or {}
    for value in (
        _per_column(ctx, "column_thresholds", column),
        ctx.option("threshold", None),
        per_method.get(method.name),
    ):
        if value is not None:
            return float(value)
    return method.threshold


def _min_effect(ctx: EvalContext, method: Method) -> float:
    """A test's effect floor: ``min_effect`` for all, ``min_effects`` by method, the default."""
    per_method: Mapping[str, Any] = ctx.option("min_effects", {}) or {}
    for value in (ctx.option("min_effect", None), per_method.get(method.name)):
        if value is not None:
            return float(value)
    return method.min_effect


def _per_column(ctx: EvalContext, option: str, column: Column) -> Any:
    """The column's entry in a {column: value} option, by result or frame name."""
    values: Mapping[str, Any] = ctx.option(option, {}) or {}
    return values.get(column.name, values.get(column.source))


def _n_bins(ctx: EvalContext) -> int | None:
    value = ctx.option("n_bins", None)
    return None if value is None else int(value)


def _dropped_note(current: int, reference: int) -> str:
    parts = [f"{n} in {where}" for n, where in ((current, "window"), (reference, "baseline")) if n]
    return f"; dropped NaN/inf: {', '.join(parts)}" if parts else ""


@register
class KSDrift(_Drift):
    key = "ks"
    method = "ks"
    description = "Two-sample Kolmogorov-Smirnov test per numeric column (scipy ks_2samp)"


@register
class ChiSquareDrift(_Drift):
    key = "chi2"
    method = "chi2"
    description = "Chi-square test per categorical column against reference proportions"


@register
class ZTestDrift(_Drift):
    key = "z"
    method = "z"
    description = "Two-proportion z-test per categorical column (evidently's z)"


@register
class PSIDrift(_Drift):
    key = "psi"
    method = "psi"
    description = "Population stability index per column (evidently's binning)"


@register
class WassersteinDrift(_Drift):
    key = "wasserstein"
    method = "wasserstein"
    description = "Wasserstein distance / std(reference) per numeric column"


@register
class JensenShannonDrift(_Drift):
    key = "jensenshannon"
    method = "jensenshannon"
    description = "Jensen-Shannon distance per column (evidently's binning)"


@register
class DataDrift(_Drift):
    key = "data_drift"
    description = "Drift per column, method chosen as evidently does, and the drifted share"

    def chosen_method(self, ctx: EvalContext, column: Column) -> str | None:
        chosen = _per_column(ctx, "methods", column)
        if chosen is None:
            chosen = ctx.option("method", None)
        return None if chosen is None else str(chosen)

    def results(self, ctx: EvalContext, baseline: pl.DataFrame) -> list[MetricResult]:
        pairs = self.results_by_column(ctx, baseline)
        features = [r for c, r in pairs if c.is_feature]
        return [*(r for _, r in pairs), self.drift_share(ctx, features)]

    def drift_share(self, ctx: EvalContext, features: list[MetricResult]) -> MetricResult:
        """evidently's dataset drift: the drifted share of the features that were evaluated."""
        evaluated = [r for r in features if r.status in (Status.OK, Status.BREACH)]
        threshold = float(ctx.option("drift_share", 0.5))
        if not evaluated:
            detail = "no feature could be evaluated"
            return self.status_only(
                Status.INSUFFICIENT_DATA, 0, detail, label="drift_share", threshold=threshold
            )
        drifted = sum(r.status is Status.BREACH for r in evaluated)
        share = drifted / len(evaluated)
        return self.result(
            share,
            len(evaluated),
            label="drift_share",
            threshold=threshold,
            status=Status.BREACH if share >= threshold else Status.OK,
            detail=f"{drifted} of {len(evaluated)} features drifted",
        )
