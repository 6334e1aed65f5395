"""Metric families from evaluation results: the latest value of every figure per model version.

"Latest" is the newest window with a value: accuracy waits for labels, so its
newest windows often have none yet. Each series carries the end of the window
it comes from, so stale figures are visible. Only whole-population results
(no segment) are exported. Per-column results are bounded: drift gets its own
series only for each version's ``top_features`` most drifted columns (their statistic,
raw and adjusted p-value, effect size), and per-feature data quality is summarised per
metric (worst value, breaching count). Every model-level figure with a threshold band
learnt from its reference (multivariate drift, estimates, realized performance) carries
it, and the sequential champion/challenger comparison its decision.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import and_, func, select

from dashboards.metrics_catalog import VERSION_LABELS, Catalog, VersionInfo
from modelwatch.store import tables as t
from modelwatch.store.engine import Store

__all__ = ["LatestResult", "latest_results", "result_families"]

DRIFT, QUALITY = "drift", "quality"
BREACH = "breach"
LATENCY_METRIC = "latency"
COST_METRIC = "cost_per_1k"
DRIFT_SHARE = ("data_drift", "drift_share")  # (metric, label) of the drifted-feature share
SEQUENTIAL_METRIC = "champion_challenger_sequential"
# The sequential comparison's decision as a number: which side its always-valid interval favours.
DECISIONS = {"challenger_better": 1.0, "undecided": 0.0, "champion_better": -1.0}
US = 1_000_000
# How far back from a metric's newest window its latest value is looked for (8 days:
# daily windows whose labels take up to a week still show their accuracy).
LOOKBACK_US = 8 * 86_400 * US

RESULT_LABELS = [*VERSION_LABELS, "monitor", "family", "metric", "column", "label"]
PER_METRIC_LABELS = [*VERSION_LABELS, "monitor", "metric"]
FEATURE_LABELS = [*VERSION_LABELS, "monitor", "metric", "feature"]
MONITOR_LABELS = [*VERSION_LABELS, "monitor"]
FIGURE_LABELS = [*VERSION_LABELS, "monitor", "figure"]


@dataclass(frozen=True)
class LatestResult:
    version: VersionInfo
    monitor: str
    family: str
    metric: str
    column: str
    label: str
    value: float
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float | None
    n: int
    breached: bool
    window_end_s: float
    p_adjusted: float | None = None
    effect: float | None = None
    band_low: float | None = None
    band_high: float | None = None
    decision: str | None = None  # the sequential comparison's, from its detail

    @property
    def breach_value(self) -> float:
        return 1.0 if self.breached else 0.0


def latest_results(
    store: Store, catalog: Catalog, families: Mapping[str, str]
) -> list[LatestResult]:
    """One grouped query: per (version, monitor, metric, column, label) the newest window
    with a value among current, unsegmented results, joined back to its row.

    Only windows up to :data:`LOOKBACK_US` older than their metric's newest window
    are searched: the (version, metric, window) index finds them without reading
    the whole history, and a figure that old is stale anyway."""
    m = t.metric_results
    keys = [m.c.version_id, m.c.monitor_id, m.c.metric, m.c.column_name, m.c.label]
    usable = and_(m.c.current == 1, m.c.segment == "", m.c.value.is_not(None))
    top = (
        select(m.c.version_id, m.c.metric, func.max(m.c.window_start_us).label("top"))
        .group_by(m.c.version_id, m.c.metric)
        .subquery()
    )
    recent = and_(
        m.c.version_id == top.c.version_id,
        m.c.metric == top.c.metric,
        m.c.window_start_us >= top.c.top - LOOKBACK_US,
    )
    newest = (
        select(*keys, func.max(m.c.window_start_us).label("newest"))
        .join(top, recent)
        .where(usable)
        .group_by(*keys)
        .subquery()
    )
    on = and_(*(c == newest.c[c.name] for c in keys), m.c.window_start_us == newest.c.newest)
    query = (
        select(m)
        .join(newest, on)
        .where(usable)
        .order_by(m.c.id)  # several rows for one key (should not happen): the last wins
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    found: dict[tuple[Any, ...], LatestResult] = {}
    for row in rows:
        r = row._mapping
        version = catalog.versions.get(r["version_id"])
        monitor = catalog.monitors.get(r["monitor_id"])
        if version is None or monitor is None or not math.isfinite(r["value"]):
            continue
        key = (r["version_id"], r["monitor_id"], r["metric"], r["column_name"], r["label"])
        found[key] = LatestResult(
            version=version,
            monitor=monitor[0],
            family=families.get(r["metric"], ""),
            metric=r["metric"],
            column=r["column_name"],
            label=r["label"],
            value=float(r["value"]),
            p_value=r["p_value"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            threshold=r["threshold"],
            n=int(r["n"]),
            breached=r["status"] == BREACH,
            window_end_s=r["window_end_us"] / US,
            p_adjusted=r["p_adjusted"],
            effect=r["effect"],
            band_low=r["band_low"],
            band_high=r["band_high"],
            decision=_decision(r["detail"]) if r["metric"] == SEQUENTIAL_METRIC else None,
        )
    return list(found.values())


def _decision(detail: str) -> str | None:
    """The ``decision`` of a sequential comparison's JSON detail, if it has one."""
    try:
        parsed = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return None
    found = parsed.get("decision") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else None


def _finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def result_families(results: list[LatestResult], top_features: int) -> Iterator[Metric]:
    """Every family built from the latest results."""
    per_column = [r for r in results if r.column and r.family in (DRIFT, QUALITY)]
    model_level = [r for r in results if not (r.column and r.family in (DRIFT, QUALITY))]
    yield from _model_level(model_level)
    yield from _bands(model_level)
    yield from _sequential(model_level)
    yield from _unit_named(model_level)
    yield from _drift([r for r in per_column if r.family == DRIFT], model_level, top_features)
    yield from _quality([r for r in per_column if r.family == QUALITY])


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _result_labels(r: LatestResult) -> list[str]:
    return [*r.version.labels, r.monitor, r.family, r.metric, r.column, r.label]


def _model_level(results: list[LatestResult]) -> Iterator[Metric]:
    value = _gauge(
        "modelwatch_result",
        "Latest value of an evaluation figure (metric key, column, class or quantile label).",
        RESULT_LABELS,
    )
    lower = _gauge("modelwatch_result_ci_lower", "Lower confidence bound.", RESULT_LABELS)
    upper = _gauge("modelwatch_result_ci_upper", "Upper confidence bound.", RESULT_LABELS)
    threshold = _gauge("modelwatch_result_threshold", "The figure's threshold.", RESULT_LABELS)
    breached = _gauge(
        "modelwatch_result_breached", "1 when the figure crossed its threshold.", RESULT_LABELS
    )
    samples = _gauge("modelwatch_result_samples", "Rows the figure is based on.", RESULT_LABELS)
    window_end = _gauge(
        "modelwatch_result_window_end_timestamp_seconds",
        "End of the window the latest figure comes from.",
        RESULT_LABELS,
    )
    for r in results:
        labels = _result_labels(r)
        value.add_metric(labels, r.value)
        breached.add_metric(labels, r.breach_value)
        samples.add_metric(labels, r.n)
        window_end.add_metric(labels, r.window_end_s)
        for family, bound in ((lower, r.ci_low), (upper, r.ci_high), (threshold, r.threshold)):
            if bound is not None and math.isfinite(bound):
                family.add_metric(labels, bound)
    yield from (value, lower, upper, threshold, breached, samples, window_end)


def _bands(results: list[LatestResult]) -> Iterator[Metric]:
    """The threshold band learnt from the reference, for the figures that have one; an open
    side (a band bounded above only) is left out."""
    lower = _gauge(
        "modelwatch_result_band_lower",
        "Lower edge of the figure's threshold band learnt from its reference.",
        RESULT_LABELS,
    )
    upper = _gauge(
        "modelwatch_result_band_upper",
        "Upper edge of the figure's threshold band learnt from its reference.",
        RESULT_LABELS,
    )
    for r in results:
        labels = _result_labels(r)
        for family, edge in ((lower, r.band_low), (upper, r.band_high)):
            if _finite(edge):
                family.add_metric(labels, edge)
    yield from (lower, upper)


def _sequential(results: list[LatestResult]) -> Iterator[Metric]:
    """The sequential comparison's decision per figure; its always-valid interval is the
    result's ``modelwatch_result_ci_lower``/``_ci_upper``."""
    decided = _gauge(
        "modelwatch_comparison_sequential_decision",
        "Which side the always-valid interval of challenger - champion favours: "
        "1 the challenger, -1 the champion, 0 undecided.",
        FIGURE_LABELS,
    )
    for r in results:
        if r.metric == SEQUENTIAL_METRIC and r.decision in DECISIONS:
            decided.add_metric([*r.version.labels, r.monitor, r.label], DECISIONS[r.decision])
    yield decided


def _quantile(label: str) -> str | None:
    """``p95`` -> ``0.95``."""
    if not label.startswith("p") or not label[1:].isdigit():
        return None
    return str(int(label[1:]) / 100)


def _unit_named(results: list[LatestResult]) -> Iterator[Metric]:
    """Cost and latency again under names that carry their units."""
    latency = _gauge(
        "modelwatch_latency_seconds",
        "Latest prediction latency quantile per model version.",
        [*MONITOR_LABELS, "quantile"],
    )
    cost = _gauge(
        "modelwatch_cost_per_1k_predictions",
        "Latest cost of 1,000 predictions (in the monitor's price currency).",
        MONITOR_LABELS,
    )
    for r in results:
        quantile = _quantile(r.label)
        if r.metric == LATENCY_METRIC and quantile is not None:
            latency.add_metric([*r.version.labels, r.monitor, quantile], r.value / 1000.0)
        elif r.metric == COST_METRIC and not r.label:
            cost.add_metric([*r.version.labels, r.monitor], r.value)
    yield from (latency, cost)


def _drift_rank(r: LatestResult) -> tuple[bool, float, float]:
    """Most drifted first: breaching, then the smallest p-value, then the largest statistic."""
    p = r.p_value if r.p_value is not None and math.isfinite(r.p_value) else math.inf
    return (not r.breached, p, -r.value)


def _drift(
    per_column: list[LatestResult], model_level: list[LatestResult], top_features: int
) -> Iterator[Metric]:
    share = _gauge(
        "modelwatch_drifted_features_ratio",
        "Latest share of a version's features that drifted.",
        MONITOR_LABELS,
    )
    for r in model_level:
        if (r.metric, r.label) == DRIFT_SHARE:
            share.add_metric([*r.version.labels, r.monitor], r.value)
    drifted = _gauge(
        "modelwatch_drifted_features",
        "Columns whose latest drift result breached, per drift metric.",
        PER_METRIC_LABELS,
    )
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    by_version: dict[tuple[str, ...], list[LatestResult]] = defaultdict(list)
    for r in per_column:
        counts[(*r.version.labels, r.monitor, r.metric)] += int(r.breached)
        by_version[tuple(r.version.labels)].append(r)
    for key, n in counts.items():
        drifted.add_metric(list(key), n)
    score = _gauge(
        "modelwatch_feature_drift_score",
        "Drift statistic of one of the version's most drifted columns.",
        FEATURE_LABELS,
    )
    p_value = _gauge("modelwatch_feature_drift_p_value", "Its p-value.", FEATURE_LABELS)
    adjusted = _gauge(
        "modelwatch_feature_drift_p_value_adjusted",
        "Its p-value adjusted for the other columns tested in the same run.",
        FEATURE_LABELS,
    )
    effect = _gauge(
        "modelwatch_feature_drift_effect_size",
        "The effect size its drift verdict also needed.",
        FEATURE_LABELS,
    )
    flag = _gauge("modelwatch_feature_drifted", "1 when the column drifted.", FEATURE_LABELS)
    for rows in by_version.values():
        for r in _top_columns(rows, top_features):
            labels = [*r.version.labels, r.monitor, r.metric, r.column]
            score.add_metric(labels, r.value)
            flag.add_metric(labels, r.breach_value)
            for family, figure in (
                (p_value, r.p_value),
                (adjusted, r.p_adjusted),
                (effect, r.effect),
            ):
                if _finite(figure):
                    family.add_metric(labels, figure)
    yield from (share, drifted, score, p_value, adjusted, effect, flag)


def _top_columns(rows: list[LatestResult], n: int) -> list[LatestResult]:
    """The rows of the ``n`` most drifted columns (each ranked by its most drifted row)."""
    best: dict[str, tuple[bool, float, float]] = {}
    for r in rows:
        rank = _drift_rank(r)
        if r.column not in best or rank < best[r.column]:
            best[r.column] = rank
    keep = set(sorted(best, key=lambda c: (best[c], c))[:n])
    return [r for r in rows if r.column in keep]


def _quality(per_column: list[LatestResult]) -> Iterator[Metric]:
    worst = _gauge(
        "modelwatch_quality_worst_feature_value",
        "Largest latest per-feature value of a data-quality metric (e.g. missing rate).",
        PER_METRIC_LABELS,
    )
    breached = _gauge(
        "modelwatch_quality_breached_features",
        "Features whose latest data-quality result breached, per metric.",
        PER_METRIC_LABELS,
    )
    groups: dict[tuple[str, ...], list[LatestResult]] = defaultdict(list)
    for r in per_column:
        groups[(*r.version.labels, r.monitor, r.metric)].append(r)
    for key, rows in groups.items():
        worst.add_metric(list(key), max(r.value for r in rows))
        breached.add_metric(list(key), sum(int(r.breached) for r in rows))
    yield from (worst, breached)
