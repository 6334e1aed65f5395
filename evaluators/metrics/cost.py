"""Cost and latency metrics (issue 3): latency quantiles, resources and cost per 1k predictions.

``ctx.usage`` holds the window's resource samples (``latency_ms``, ``cpu_seconds``,
``gpu_seconds``, ``memory_mb``, ``cost``; Float64, nullable). Nulls, NaN and ±inf in
a usage column are treated as "not reported" and dropped; a column the frame lacks
is all "not reported". The number of predictions is the height of ``ctx.window``.

The helpers here are shared with :mod:`evaluators.metrics.comparison` (``cost_diff``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

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
from evaluators.intervals import quantile_interval
from evaluators.metrics.sampled import finite_figures

__all__ = [
    "CostPer1k",
    "Latency",
    "ResourcePer1k",
    "cost_per_1k",
    "latency_quantile",
    "prediction_count",
]

Floats = npt.NDArray[np.float64]
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
PRICE_KEYS = ("cpu_hour", "gpu_hour", "gb_hour")


def usage_column(usage: pl.DataFrame | None, name: str) -> Floats:
    """A usage column as float64 with NaN wherever a value is null, non-finite or absent."""
    if usage is None or name not in usage.columns:
        return np.full(0 if usage is None else usage.height, np.nan)
    values = usage[name].cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def finite_values(usage: pl.DataFrame | None, name: str) -> Floats:
    values = usage_column(usage, name)
    return values[~np.isnan(values)]


def number_option(options: Mapping[str, Any], name: str) -> float | None:
    """A finite, non-negative number option, or None when absent (Unavailable if malformed)."""
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unavailable(Status.ERROR, f"option {name!r} must be a finite number, got {value!r}")
    if value < 0:
        raise Unavailable(Status.ERROR, f"option {name!r} must not be negative, got {value!r}")
    return float(value)


def prediction_count(window: pl.DataFrame | None, min_samples: int, who: str = "") -> int:
    """The number of predictions in a window, or Unavailable(insufficient_data)."""
    n = 0 if window is None else window.height
    if n == 0 or n < min_samples:
        raise Unavailable(
            Status.INSUFFICIENT_DATA, f"{who}{n} predictions, minimum {min_samples}", n
        )
    return n


def quantile_ci(values: Floats, q: float, confidence: float) -> tuple[float, float, float]:
    """Quantile ``q`` (numpy's linear interpolation) and its distribution-free CI from
    binomial order statistics (:func:`evaluators.intervals.quantile_interval`)."""
    x = np.sort(values)
    low, high = quantile_interval(x, np.array([q]), confidence)
    return float(np.quantile(x, q)), float(low[0]), float(high[0])


def latency_values(usage: pl.DataFrame | None, min_samples: int, who: str = "") -> Floats:
    """The finite ``latency_ms`` samples, or Unavailable(insufficient_data) if too few."""
    values = finite_values(usage, "latency_ms")
    if values.size == 0 or values.size < min_samples:
        detail = f"{who}{values.size} latency samples, minimum {min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, int(values.size))
    return values


def latency_quantile(
    usage: pl.DataFrame | None, q: float, confidence: float, min_samples: int, who: str = ""
) -> tuple[float, float, float, int]:
    """(quantile, ci_low, ci_high, n) of ``latency_ms``, or Unavailable(insufficient_data)."""
    values = latency_values(usage, min_samples, who)
    return (*quantile_ci(values, q, confidence), int(values.size))


def memory_gb_hours(memory_mb: Floats, window_hours: float) -> Floats:
    """Each memory sample's GB-hours: the samples share the window's duration equally,
    so the sum is ``mean(memory_mb) / 1024 * window_hours``. NaN samples give 0."""
    reported = ~np.isnan(memory_mb)
    count = int(reported.sum())
    if count == 0:
        return np.zeros_like(memory_mb)
    return np.where(reported, memory_mb / 1024.0 * window_hours / count, 0.0)


def prices_option(options: Mapping[str, Any]) -> dict[str, float]:
    raw = options.get("prices") or {}
    if not isinstance(raw, Mapping):
        raise Unavailable(Status.ERROR, f"option 'prices' must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(PRICE_KEYS))
    if unknown:
        raise Unavailable(Status.ERROR, f"unknown price keys {unknown}; known: {list(PRICE_KEYS)}")
    found = {key: number_option(raw, key) for key in PRICE_KEYS}
    return {key: value for key, value in found.items() if value}  # 0 means "no price"


def cost_per_1k(
    usage: pl.DataFrame | None, n_predictions: int, options: Mapping[str, Any], who: str = ""
) -> tuple[float, str]:
    """(cost per 1k predictions, which source): see :class:`CostPer1k`."""
    if usage is None or usage.height == 0:
        raise Unavailable(Status.INSUFFICIENT_DATA, f"{who}no usage samples in the window")
    prices = prices_option(options)
    cost = usage_column(usage, "cost")
    direct = ~np.isnan(cost)
    if not prices and not direct.any():
        raise Unavailable(Status.NOT_APPLICABLE, f"{who}no cost field in usage and no prices set")
    priced = _priced(usage, ~direct, prices, options)
    total = float(cost[direct].sum()) + priced
    detail = f"cost field: {int(direct.sum())} samples, prices: {int((~direct).sum())} samples"
    unpriced = [key for key in PRICE_KEYS if key not in prices and _used(usage, key, ~direct)]
    if unpriced:
        detail += f"; unpriced usage counted as 0: {', '.join(unpriced)}"
    return total / n_predictions * 1000.0, detail


def _priced(
    usage: pl.DataFrame,
    rows: npt.NDArray[np.bool_],
    prices: Mapping[str, float],
    options: Mapping[str, Any],
) -> float:
    """The cost of the samples ``rows`` from the price table."""
    amounts = {
        "cpu_hour": np.nan_to_num(usage_column(usage, "cpu_seconds")) / 3600.0,
        "gpu_hour": np.nan_to_num(usage_column(usage, "gpu_seconds")) / 3600.0,
    }
    memory = usage_column(usage, "memory_mb")
    if "gb_hour" in prices and (rows & ~np.isnan(memory)).any():
        window_hours = number_option(options, "window_hours")
        if window_hours is None:
            raise Unavailable(Status.ERROR, "option 'window_hours' is needed to price memory")
        amounts["gb_hour"] = memory_gb_hours(memory, window_hours)
    return sum(prices.get(key, 0.0) * float(amount[rows].sum()) for key, amount in amounts.items())


def _used(usage: pl.DataFrame, price_key: str, rows: npt.NDArray[np.bool_]) -> bool:
    column = {"cpu_hour": "cpu_seconds", "gpu_hour": "gpu_seconds", "gb_hour": "memory_mb"}
    values = usage_column(usage, column[price_key])[rows]
    return bool(np.nan_to_num(values).any())


@register
class Latency(Metric):
    """Latency quantiles of ``latency_ms`` in the window's usage samples.

    One result per label ``p50``, ``p95``, ``p99`` (column ``latency_ms``): value is
    numpy's linearly interpolated quantile, ``ci_low``/``ci_high`` a distribution-free
    CI from binomial order statistics (``[x_(l), x_(u)]`` with ``l``, ``u - 1`` the
    alpha/2 and 1 - alpha/2 quantiles of Binomial(n, q), clipped to the sample), ``n``
    the number of finite latency samples. Options: ``confidence`` (default 0.95). Fewer than
    ``min_samples`` samples (or none, or no usage frame) → ``insufficient_data``.
    """

    key = "latency"
    family = Family.COST
    description = "latency p50/p95/p99 (ms) with order-statistic CIs"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        return finite_figures(self._compute(ctx))

    def _compute(self, ctx: EvalContext) -> list[MetricResult]:
        try:
            confidence = interval_settings(ctx.options).confidence
            ordered = np.sort(latency_values(ctx.usage, ctx.min_samples))
        except Unavailable as exc:
            return [self.unavailable(exc, column="latency_ms", label=label) for label in QUANTILES]
        qs = np.array(list(QUANTILES.values()))
        values = np.quantile(ordered, qs)
        low, high = quantile_interval(ordered, qs, confidence)
        n = int(ordered.size)
        return [
            self.result(
                float(values[i]),
                n,
                column="latency_ms",
                label=label,
                ci_low=float(low[i]),
                ci_high=float(high[i]),
            )
            for i, label in enumerate(QUANTILES)
        ]


@register
class ResourcePer1k(Metric):
    """Resources consumed per 1,000 predictions (n = predictions in the window).

    Labels:
    - ``cpu_seconds``: ``sum(cpu_seconds) / n * 1000`` (samples are per-request or
      per-interval amounts, so they add up);
    - ``gpu_seconds``: the same for ``gpu_seconds``;
    - ``memory_gb_hours``: ``mean(memory_mb) / 1024 * window_hours / n * 1000``
      (memory is a gauge held for the whole window), with ``window_hours`` from
      ``ctx.options`` (supplied by the runner; missing → ``error``).

    A resource with no reported samples → ``not_applicable`` (e.g. no GPU). An empty
    window, fewer than ``min_samples`` predictions or no usage samples at all →
    ``insufficient_data``.
    """

    key = "resource_per_1k"
    family = Family.COST
    description = "CPU/GPU seconds and memory GB-hours per 1k predictions"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        return finite_figures(self._compute(ctx))

    def _compute(self, ctx: EvalContext) -> list[MetricResult]:
        labels = ("cpu_seconds", "gpu_seconds", "memory_gb_hours")
        results = []
        for label in labels:
            try:
                value, detail = self._figure(ctx, label)
            except Unavailable as exc:
                results.append(self.unavailable(exc, label=label))
                continue
            results.append(self.result(value, ctx.window.height, label=label, detail=detail))
        return results

    def _figure(self, ctx: EvalContext, label: str) -> tuple[float, str]:
        n = prediction_count(ctx.window, ctx.min_samples)
        if ctx.usage is None or ctx.usage.height == 0:
            raise Unavailable(Status.INSUFFICIENT_DATA, "no usage samples in the window", n)
        source = "memory_mb" if label == "memory_gb_hours" else label
        values = finite_values(ctx.usage, source)
        if values.size == 0:
            raise Unavailable(Status.NOT_APPLICABLE, f"no {source} samples in the window", n)
        if label != "memory_gb_hours":
            return float(values.sum()) / n * 1000.0, f"{values.size} samples"
        window_hours = number_option(ctx.options, "window_hours")
        if window_hours is None:
            raise Unavailable(Status.ERROR, "option 'window_hours' is missing", n)
        gb_hours = float(values.mean()) / 1024.0 * window_hours
        return gb_hours / n * 1000.0, f"{values.size} samples over {window_hours:g} h"


@register
class CostPer1k(Metric):
    """Cost per 1,000 predictions in the window (n = predictions).

    A usage sample carrying ``cost`` contributes that amount; any other sample is
    priced from ``ctx.options["prices"]`` = ``{"cpu_hour", "gpu_hour", "gb_hour"}``
    ($ each, all optional): ``cpu_seconds / 3600 * cpu_hour + gpu_seconds / 3600 *
    gpu_hour + gb_hours * gb_hour``, where each memory sample stands for an equal
    share of the window (``memory_mb / 1024 * window_hours / memory samples``, so all
    samples together give ``mean(memory_mb) / 1024 * window_hours`` as in
    ``resource_per_1k``). ``window_hours`` is read only when memory is priced.
    ``detail`` says how many samples used each source and which reported resources
    had no price (counted as 0; a price of 0 counts as no price). No cost field and no
    prices → ``not_applicable``; malformed prices → ``error``; no usage
    samples, an empty window or fewer than ``min_samples`` predictions →
    ``insufficient_data``.
    """

    key = "cost_per_1k"
    family = Family.COST
    description = "$ per 1k predictions from the cost field or the price table"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        return finite_figures(self._compute(ctx))

    def _compute(self, ctx: EvalContext) -> list[MetricResult]:
        try:
            n = prediction_count(ctx.window, ctx.min_samples)
            value, detail = cost_per_1k(ctx.usage, n, ctx.options)
        except Unavailable as exc:
            return [self.status_only(exc.status, exc.n or ctx.window.height, exc.detail)]
        return [self.result(value, n, detail=detail)]
