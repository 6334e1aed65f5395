"""The shared shape of metrics over joined rows (accuracy-type metrics).

A :class:`SampledMetric` checks the task and options, takes the rows whose
label has joined, turns them into a typed sample, applies the minimum sample
size, evaluates, then judges every result against ``threshold``.

Without a ``threshold``, a figure is judged by a band learnt from the baseline's labelled
rows, as NannyML learns realized-performance thresholds
(https://nannyml.readthedocs.io/en/stable/how_it_works/thresholds.html): the same metric
computed on baseline chunks of the window's size (:func:`evaluators.learnt.reference_chunks`),
``band_low``/``band_high`` their mean ± ``sigmas`` (default 3) standard deviations, clipped to
the metric's range; a figure outside it is a ``breach`` (either side: a sudden rise is as
suspect as a fall, a leaked label for one). Headline figures only (the positive class or the
macro average; every quantile): a band on each class would multiply false alarms. Learnt once
per baseline frame, options and window-size bucket (:func:`evaluators.learnt.cached`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Hashable
from dataclasses import replace
from typing import ClassVar, Generic, Protocol, TypeVar

import numpy as np
import polars as pl

from evaluators import learnt
from evaluators.base import EvalContext, Metric, MetricResult, Status
from evaluators.intervals import IntervalSettings

__all__ = ["Sample", "SampledMetric", "finite_figures", "joined_rows"]


class Sample(Protocol):
    """What :class:`SampledMetric` needs of a window's usable rows."""

    @property
    def n(self) -> int: ...

    @property
    def notes(self) -> tuple[str, ...]: ...  # rows left out, and why


S = TypeVar("S", bound=Sample)


class SampledMetric(Metric, Generic[S]):
    """A metric over joined rows: task, options, rows, minimum sample size, then
    :meth:`evaluate`; then ``threshold`` (worse than it: ``breach``) on every result.
    Shared with :mod:`evaluators.metrics.regression`."""

    higher_is_better: ClassVar[bool | None] = True  # None: no threshold applies
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # where a band is clipped
    figure_options: ClassVar[tuple[str, ...]] = ()  # options that change the figure itself

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        if ctx.spec.task not in self.tasks:
            tasks = ", ".join(sorted(self.tasks))
            detail = f"{self.key} applies to {tasks} models, not {ctx.spec.task}"
            return [self.status_only(Status.NOT_APPLICABLE, 0, detail)]
        try:
            settings = IntervalSettings.from_options(ctx.options)
            threshold = _threshold(ctx.options.get("threshold"))
            sigmas = _sigmas(ctx.options.get("sigmas", 3.0))
            results = finite_figures(self._run(ctx, settings))
        except ValueError as exc:  # a bad option, reported rather than raised
            return [self.status_only(Status.ERROR, 0, str(exc))]
        if threshold is None and self.higher_is_better is not None:
            return self._banded(ctx, results, settings, sigmas)
        return [_judge(r, threshold, self.higher_is_better) for r in results]

    def has_band(self, result: MetricResult) -> bool:
        """Whether ``result`` is a headline figure, judged by a band when no threshold is set."""
        return result.label in (None, "macro")

    def _banded(
        self,
        ctx: EvalContext,
        results: list[MetricResult],
        settings: IntervalSettings,
        sigmas: float,
    ) -> list[MetricResult]:
        wanted = [r for r in results if r.status is Status.OK and self.has_band(r)]
        baseline = ctx.baseline
        if not wanted or baseline is None or "label" not in baseline.columns:
            return results
        n = max(r.n for r in wanted)
        key = (
            self.key,
            "realized band",
            learnt.size_bucket(n),
            settings.seed,
            *(repr(ctx.options.get(o)) for o in self.figure_options),
        )
        bands = learnt.cached(baseline, key, lambda: self._learn(ctx, baseline, n, settings))
        return [
            _in_band(r, bands.get((r.column, r.label)), sigmas, self.value_range) for r in results
        ]

    def _learn(
        self, ctx: EvalContext, baseline: pl.DataFrame, n: int, settings: IntervalSettings
    ) -> dict[Hashable, learnt.Band]:
        rows = baseline.filter(pl.col("label").is_not_null())
        chunks = learnt.reference_chunks(rows, learnt.size_bucket(n), settings.seed)
        quiet = replace(settings, resamples=0)  # a chunk's figure only, not its interval

        def figures(chunk: pl.DataFrame) -> dict[Hashable, float]:
            part = replace(ctx, window=chunk, baseline=None, memo={})
            return {
                (r.column, r.label): r.value
                for r in self._run(part, quiet)
                if r.status is Status.OK and r.value is not None and self.has_band(r)
            }

        return learnt.learn_bands(chunks, figures)

    def _run(self, ctx: EvalContext, settings: IntervalSettings) -> list[MetricResult]:
        rows = joined_rows(self, ctx)
        if isinstance(rows, MetricResult):
            return [rows]
        sample = self.sample(ctx, rows)
        if isinstance(sample, MetricResult):
            return [sample]
        results = self._too_few(sample, ctx) or self.evaluate(sample, settings, ctx)
        return [_noted(r, sample.notes) for r in results]

    def _too_few(self, sample: S, ctx: EvalContext) -> list[MetricResult]:
        if sample.n >= max(ctx.min_samples, 1):
            return []
        detail = f"{sample.n} usable rows, fewer than the minimum {ctx.min_samples}"
        return [self.status_only(Status.INSUFFICIENT_DATA, sample.n, detail)]

    @abstractmethod
    def sample(self, ctx: EvalContext, rows: pl.DataFrame) -> S | MetricResult:
        """The usable rows of the joined ``rows``, or a status result saying why none."""

    @abstractmethod
    def evaluate(self, w: S, settings: IntervalSettings, ctx: EvalContext) -> list[MetricResult]:
        """The results for a sample of at least the minimum size."""


def finite_figures(results: list[MetricResult]) -> list[MetricResult]:
    """``results`` with every figure that overflowed (inputs near the float limits) turned
    into ``error`` saying so, and non-finite interval bounds and p-values dropped."""
    out = []
    for r in results:
        if r.value is not None and not math.isfinite(r.value):
            why = f"the figure is not finite ({r.value}): input values too large"
            detail = "; ".join(d for d in (why, r.detail) if d)
            r = replace(r, value=None, status=Status.ERROR, detail=detail)
        if not all(v is None or math.isfinite(v) for v in (r.ci_low, r.ci_high)):
            r = replace(r, ci_low=None, ci_high=None)
        if r.p_value is not None and not math.isfinite(r.p_value):
            r = replace(r, p_value=None)
        out.append(r)
    return out


def _noted(result: MetricResult, notes: tuple[str, ...]) -> MetricResult:
    detail = "; ".join(d for d in (result.detail, *notes) if d)
    return replace(result, detail=detail)


def _threshold(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"option 'threshold' must be a number, got {value!r}")
    return float(value)


def _sigmas(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"option 'sigmas' must be a positive number, got {value!r}")
    return float(value)


def _in_band(
    result: MetricResult, band: learnt.Band | None, sigmas: float, value_range: tuple[float, float]
) -> MetricResult:
    """``result`` with its band, ``breach`` when an ``ok`` figure is outside it."""
    if band is None or result.value is None:
        return result
    low, high = band.edges(result.n, sigmas, *value_range)
    how = f"band [{low:.4g}, {high:.4g}] from {band.how}"
    detail = "; ".join(d for d in (result.detail, how) if d)
    status = result.status
    if status is Status.OK and not low <= result.value <= high:
        status = Status.BREACH
    return replace(result, band_low=low, band_high=high, status=status, detail=detail)


def _judge(result: MetricResult, threshold: float | None, higher: bool | None) -> MetricResult:
    """Status ``breach`` when an ``ok`` value is worse than the threshold."""
    if threshold is None or higher is None:
        return result
    if result.status is not Status.OK or result.value is None:
        return replace(result, threshold=threshold)
    worse = result.value < threshold if higher else result.value > threshold
    return replace(result, threshold=threshold, status=Status.BREACH if worse else Status.OK)


def joined_rows(metric: Metric, ctx: EvalContext) -> pl.DataFrame | MetricResult:
    """The window's rows whose label has joined, or ``insufficient_data``/``no_labels``."""
    window = ctx.window
    if window.height == 0:
        return metric.status_only(Status.INSUFFICIENT_DATA, 0, "empty window")
    if "label" not in window.columns or window["label"].null_count() == window.height:
        return metric.status_only(Status.NO_LABELS, 0, "no ground truth joined yet")
    return ctx.memoised("joined_rows", window, lambda: window.filter(pl.col("label").is_not_null()))
