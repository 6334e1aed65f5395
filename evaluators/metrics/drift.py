"""Drift metrics (issue 3): each feature, the prediction, the scores and the target of a
window against the baseline; the statistics are :mod:`evaluators.stattests`.

Keys ``ks``, ``chi2``, ``z``, ``psi``, ``wasserstein`` and ``jensenshannon`` run one method on
every column it applies to (ks, wasserstein: numeric; chi2, z: categorical; psi,
jensenshannon: both). ``data_drift`` picks the method per column as evidently's default
does (:func:`default_method`: reference of at most 1,000 values → ks, or chi2/z when
both samples hold at most 5 values, z for 2; larger → wasserstein for numeric columns
with more than 5 values, else jensenshannon) and adds the model-level ``drift_share``.

Columns: every feature of the spec (numeric → numeric tests; categorical and boolean →
categorical tests; text → ``not_applicable``), then ``prediction``, ``score`` /
``score_<class>`` and the target (frame column ``label``, reported as column ``target``)
when both frames have them, typed by their dtype.

Options: ``columns`` (names to restrict to), ``method`` (every column of ``data_drift``),
``methods`` ({column: method}; evidently's names ``chisquare`` and ``js`` are accepted),
``thresholds`` ({method: threshold}), ``threshold`` (every column), ``column_thresholds``
({column: threshold}; precedence: column, all, method, default), ``n_bins`` (equal-width
bins for PSI and Jensen-Shannon instead of evidently's Sturges bins), ``drift_share``
(default 0.5) and ``workers`` (threads over columns, for windows of 50,000 rows or more).

Results: value = the statistic, ``p_value`` where the test has one, ``n`` = the window's
values used, ``detail`` = the method. A column drifts (``breach``) as in evidently: KS
p ≤ threshold, chi-square and z p < threshold, distances ≥ threshold (defaults 0.05 and
0.1). ``drift_share`` is the drifted share of the features that could be evaluated, in
breach when ≥ its threshold (evidently's ``dataset_drift``).

Bad data: no baseline → one ``no_baseline`` result; fewer than ``min_samples`` values in
either frame → ``insufficient_data``; an unlabelled window → ``no_labels`` for the
target; a missing column, a numeric column of strings, an unknown method → ``error``.
NaN and ±inf are dropped, as evidently does, and ``detail`` says how many. As in
evidently, a constant reference divides the Wasserstein distance by 0.001, and a value
never seen in the reference makes the chi-square statistic inf with p = 0: the result
has no value (results are finite), p = 0, ``breach``, and ``detail`` says so.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
]

NUMERIC, CATEGORICAL = "numeric", "categorical"
PARALLEL_MIN_ROWS = 50_000  # below this, threads cost more than they save
DEFAULT_WORKERS = min(os.cpu_count() or 1, 4)  # each busy thread holds ~40 MB per 1M rows


@dataclass(frozen=True)
class Method:
    """A drift method: which column kinds it takes, its default threshold, its drift rule."""

    name: str
    kinds: frozenset[str]
    threshold: float
    run: Callable[[st.ReferenceProfile, pl.Series, int | None], st.TestResult]
    rule: Callable[[float, float | None, float], bool]


def _p_at_most(stat: float, p: float | None, threshold: float) -> bool:
    return p is not None and p <= threshold


def _p_below(stat: float, p: float | None, threshold: float) -> bool:
    return p is not None and p < threshold


def _at_least(stat: float, p: float | None, threshold: float) -> bool:
    return stat >= threshold


BOTH = frozenset({NUMERIC, CATEGORICAL})
METHODS: dict[str, Method] = {
    "ks": Method("ks", frozenset({NUMERIC}), 0.05, lambda r, c, b: st.ks(r, c), _p_at_most),
    "chi2": Method(
        "chi2", frozenset({CATEGORICAL}), 0.05, lambda r, c, b: st.chi_square(r, c), _p_below
    ),
    "z": Method("z", frozenset({CATEGORICAL}), 0.05, lambda r, c, b: st.z_test(r, c), _p_below),
    "psi": Method("psi", BOTH, 0.1, lambda r, c, b: st.psi(r, c, n_bins=b), _at_least),
    "jensenshannon": Method(
        "jensenshannon", BOTH, 0.1, lambda r, c, b: st.jensenshannon(r, c, n_bins=b), _at_least
    ),
    "wasserstein": Method(
        "wasserstein", frozenset({NUMERIC}), 0.1, lambda r, c, b: st.wasserstein(r, c), _at_least
    ),
}
ALIASES = {"chisquare": "chi2", "js": "jensenshannon", "kolmogorov_smirnov": "ks"}


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


def default_method(profile: st.ReferenceProfile, current: pl.Series) -> str:
    """evidently's default (``_get_default_stattest``): by reference size, kind and the number
    of distinct values in both samples together."""
    numeric = not profile.categorical
    if profile.n <= 1000:
        if numeric and profile.n_unique > 5:
            return "ks"
        n_values = st.n_unique_union(profile, current)
        if numeric and n_values > 5:
            return "ks"
        return "chi2" if n_values > 2 else "z"
    if not numeric:
        return "jensenshannon"
    if profile.n_unique > 5 or st.n_unique_union(profile, current) > 5:
        return "wasserstein"
    return "jensenshannon"


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
        columns = [c for c in columns_to_check(ctx, baseline) if self.applies(c)]
        workers = int(ctx.option("workers", DEFAULT_WORKERS))
        if workers <= 1 or len(columns) <= 1 or ctx.window.height < PARALLEL_MIN_ROWS:
            return [(c, self.check(ctx, baseline, c)) for c in columns]
        with ThreadPoolExecutor(min(workers, len(columns)), thread_name_prefix="mw-drift") as pool:
            results = pool.map(lambda c: self.check(ctx, baseline, c), columns)
            return list(zip(columns, results, strict=True))

    def applies(self, column: Column) -> bool:
        if self.method is None:
            return True
        return column.kind is not None and column.kind in METHODS[self.method].kinds

    def chosen_method(self, ctx: EvalContext, column: Column) -> str | None:
        """The method asked for, or None for :func:`default_method`."""
        return self.method

    def check(self, ctx: EvalContext, baseline: pl.DataFrame, column: Column) -> MetricResult:
        try:
            return self._check(ctx, baseline, column)
        except Unavailable as skip:
            return self.unavailable(skip, column=column.name)
        except Exception as exc:  # a metric never raises on bad data
            detail = f"{type(exc).__name__}: {exc}"
            return self.status_only(Status.ERROR, 0, detail, column=column.name)

    def _check(self, ctx: EvalContext, baseline: pl.DataFrame, column: Column) -> MetricResult:
        if column.kind is None:
            raise Unavailable(Status.NOT_APPLICABLE, "text columns have no drift test")
        if column.source not in ctx.window.columns or column.source not in baseline.columns:
            raise Unavailable(Status.ERROR, f"column {column.source!r} is missing from a frame")
        current, dropped = clean(ctx.window.get_column(column.source), column.kind)
        reference = reference_for(baseline, column)
        _require_samples(ctx, column, current, reference)
        method = self._method(ctx, column, reference.profile, current)
        statistic, p_value = method.run(reference.profile, current, _n_bins(ctx))
        if math.isnan(statistic):  # values near the float limits overflow the arithmetic
            detail = f"{method.name}: the statistic is not a number (values too large?)"
            raise Unavailable(Status.ERROR, detail, current.len())
        if p_value is not None and math.isnan(p_value):  # chi2 over a single category: df 0
            p_value = None
        threshold = _threshold(ctx, column, method)
        drifted = method.rule(statistic, p_value, threshold)
        finite = math.isfinite(statistic)  # chi2 over a value unseen in the reference: inf
        return self.result(
            statistic if finite else None,
            current.len(),
            column=column.name,
            p_value=p_value,
            threshold=threshold,
            status=Status.BREACH if drifted else Status.OK,
            detail=method.name
            + ("" if finite else f"; statistic {statistic}")
            + _dropped_note(dropped, reference.dropped),
        )

    def _method(
        self, ctx: EvalContext, column: Column, profile: st.ReferenceProfile, current: pl.Series
    ) -> Method:
        chosen = self.chosen_method(ctx, column)
        if chosen is None:  # evidently's default may put chi2/z on few-valued numeric columns
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
