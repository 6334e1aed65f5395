"""Champion vs challenger (issue 3): accuracy-type differences and cost/latency differences.

``ctx.window`` is the champion's window and ``ctx.challenger`` the challenger's (same
columns). Every difference is challenger - champion: positive accuracy/F1 differences
favour the challenger, positive MAE/RMSE/cost/latency differences favour the champion.
The metrics report; policies decide, so every computed figure has status ``ok``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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
from evaluators.intervals import (
    IntervalSettings,
    bootstrap_interval,
    bounds,
    group_sums,
    rmse_interval,
    wilson,
    z_score,
)
from evaluators.metrics.cost import cost_per_1k, latency_quantile, prediction_count
from evaluators.metrics.sampled import finite_figures
from modelwatch.domain import ModelSpec

__all__ = ["MODES", "ChampionChallenger", "CostDiff", "traffic_mode"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
MODES = ("auto", "shadow", "split")


@dataclass(frozen=True)
class _Samples:
    """Labelled rows: ``shadow`` pairs share ``truth``; ``split`` sides are independent."""

    mode: str
    champion: tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]  # (truth, prediction)
    challenger: tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]

    @property
    def paired(self) -> bool:
        return self.mode == "shadow"

    @property
    def n(self) -> int:
        """Pairs in shadow mode, rows of both sides in split mode."""
        n1, n2 = self.champion[0].size, self.challenger[0].size
        return n1 if self.paired else n1 + n2


@dataclass(frozen=True)
class _Figure:
    value: float
    low: float = math.nan
    high: float = math.nan
    p_value: float | None = None


# --- preparing the samples ------------------------------------------------------------


def _valid(name: str, regression: bool) -> pl.Expr:
    col = pl.col(name)
    return col.is_not_null() & col.is_finite() if regression else col.is_not_null()


def _conformed(frame: pl.DataFrame, regression: bool, who: str) -> pl.DataFrame:
    missing = [c for c in ("request_id", "prediction") if c not in frame.columns]
    if missing:
        raise Unavailable(Status.ERROR, f"{who} window lacks columns {missing}", frame.height)
    dtype = pl.Float64 if regression else pl.String
    label = pl.col("label") if "label" in frame.columns else pl.lit(None)
    return frame.select(
        pl.col("request_id").cast(pl.String),
        label.cast(dtype, strict=False).alias("label"),
        pl.col("prediction").cast(dtype, strict=False),
    ).unique("request_id", keep="first", maintain_order=True)


def traffic_mode(ctx: EvalContext, champion: pl.DataFrame, challenger: pl.DataFrame) -> str:
    """The ``mode`` option, or from the data: ``shadow`` when the versions scored at least
    ``min_samples`` of the same requests, else ``split``."""
    mode = ctx.option("mode", "auto")
    if mode not in MODES:
        raise Unavailable(Status.ERROR, f"option 'mode' must be one of {list(MODES)}, got {mode!r}")
    if mode != "auto":
        return str(mode)
    shared = int(champion["request_id"].is_in(challenger["request_id"].implode()).sum())
    return "shadow" if shared > 0 and shared >= ctx.min_samples else "split"


def _enough(n: int, ctx: EvalContext, what: str) -> None:
    if n == 0:
        raise Unavailable(Status.NO_LABELS, f"no labelled {what}")
    if n < ctx.min_samples:
        detail = f"{n} labelled {what}, minimum {ctx.min_samples}"
        raise Unavailable(Status.INSUFFICIENT_DATA, detail, n)


def _shadow(ctx: EvalContext, champion: pl.DataFrame, challenger: pl.DataFrame) -> _Samples:
    regression = not ctx.spec.is_classification
    joined = champion.join(challenger, on="request_id", how="inner", suffix="_c")
    if joined.height == 0:
        raise Unavailable(Status.INSUFFICIENT_DATA, "shadow mode: no shared request ids")
    joined = joined.with_columns(pl.coalesce("label", "label_c").alias("truth")).filter(
        _valid("truth", regression)
        & _valid("prediction", regression)
        & _valid("prediction_c", regression)
    )
    _enough(joined.height, ctx, "shared request ids")
    truth = joined["truth"].to_numpy()
    return _Samples(
        "shadow",
        (truth, joined["prediction"].to_numpy()),
        (truth, joined["prediction_c"].to_numpy()),
    )


def _split(ctx: EvalContext, champion: pl.DataFrame, challenger: pl.DataFrame) -> _Samples:
    regression = not ctx.spec.is_classification
    sides = []
    for who, frame in (("champion", champion), ("challenger", challenger)):
        rows = frame.filter(_valid("label", regression) & _valid("prediction", regression))
        _enough(rows.height, ctx, f"{who} rows")
        sides.append((rows["label"].to_numpy(), rows["prediction"].to_numpy()))
    return _Samples("split", sides[0], sides[1])


def _samples(ctx: EvalContext) -> _Samples:
    if ctx.challenger is None:
        raise Unavailable(Status.NOT_APPLICABLE, "no challenger window")
    regression = not ctx.spec.is_classification
    frames = []
    for who, frame in (("champion", ctx.window), ("challenger", ctx.challenger)):
        if frame.height == 0:
            raise Unavailable(Status.INSUFFICIENT_DATA, f"the {who} window is empty")
        frames.append(_conformed(frame, regression, who))
    champion, challenger = frames
    mode = traffic_mode(ctx, champion, challenger)
    return (_shadow if mode == "shadow" else _split)(ctx, champion, challenger)


# --- classification -------------------------------------------------------------------


def _newcombe_paired(a: int, b: int, c: int, d: int, confidence: float) -> tuple[float, float]:
    """Newcombe's (1998) square-and-add CI for p1 - p2 on paired data, with Fagerland's
    continuity-corrected correlation; p1 = (a+b)/n, p2 = (a+c)/n."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, l2), (u1, u2) = wilson(np.array([a + b, a + c]), n, confidence)
    margins = float(a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    psi = 0.0
    if margins > 0 and cross > n / 2:
        psi = (cross - n / 2) / math.sqrt(margins)
    elif margins > 0 and cross < 0:
        psi = cross / math.sqrt(margins)
    diff = p1 - p2
    lower = (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)
    upper = (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)
    return diff - math.sqrt(max(lower, 0.0)), diff + math.sqrt(max(upper, 0.0))


def _mover(
    est1: float, ci1: tuple[float, float], est2: float, ci2: tuple[float, float]
) -> tuple[float, float]:
    """CI of ``est1 - est2`` for independent estimates from their own CIs (square-and-add,
    Newcombe 1998 / Zou & Donner 2008)."""
    diff = est1 - est2
    low = diff - math.hypot(est1 - ci1[0], ci2[1] - est2)
    high = diff + math.hypot(ci1[1] - est1, est2 - ci2[0])
    return low, high


def _accuracy(s: _Samples, settings: IntervalSettings) -> _Figure:
    hit1 = s.champion[0] == s.champion[1]
    hit2 = s.challenger[0] == s.challenger[1]
    if s.paired:
        a, b = int(np.sum(hit2 & hit1)), int(np.sum(hit2 & ~hit1))
        c = int(np.sum(~hit2 & hit1))
        d = hit1.size - a - b - c
        low, high = _newcombe_paired(a, b, c, d, settings.confidence)
        p_value = _mcnemar_exact(b, c)
        return _Figure((b - c) / hit1.size, low, high, p_value)
    x1, n1, x2, n2 = int(hit1.sum()), hit1.size, int(hit2.sum()), hit2.size
    (l1, l2), (u1, u2) = wilson(np.array([x1, x2]), np.array([n1, n2]), settings.confidence)
    low, high = _mover(x2 / n2, (l2, u2), x1 / n1, (l1, u1))
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = _two_sided_normal(abs(x2 / n2 - x1 / n1) / se) if se > 0 else 1.0
    return _Figure(x2 / n2 - x1 / n1, low, high, p_value)


def _two_sided_normal(z: float) -> float:
    """``2 * scipy.stats.norm.sf(z)`` for ``z >= 0``, accurate in the far tail."""
    return math.erfc(z / math.sqrt(2.0))


def _mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar: the two-sided binomial test of ``b`` of ``b + c`` discordant pairs."""
    if b + c == 0:
        return 1.0
    from scipy import stats  # here, not at import: scipy.stats costs a second of start-up

    return float(stats.binomtest(b, b + c, 0.5).pvalue)


def _f1(weights: Floats, truth: Ints, pred: Ints, k: int, positive: int | None) -> Floats:
    """F1 per resample (rows of ``weights`` over cells): the positive class's, or the macro
    average over the classes present in the truth or the predictions (sklearn's)."""
    support = group_sums(weights, truth, k) + group_sums(weights, pred, k)
    hits = group_sums(weights, truth, k, (truth == pred).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(support > 0, 2.0 * hits / support, 0.0)
        if positive is not None:
            return np.asarray(per_class[:, positive], dtype=np.float64)
        present = support > 0
        return np.asarray(per_class.sum(axis=1) / present.sum(axis=1), dtype=np.float64)


def _cells(*columns: npt.NDArray[np.generic]) -> tuple[list[Ints], Ints]:
    """The distinct rows of the coded columns and how often each occurs."""
    rows, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
    return [rows[:, i].astype(np.int64) for i in range(len(columns))], counts.astype(np.int64)


def _f1_figure(s: _Samples, spec: ModelSpec, settings: IntervalSettings) -> _Figure:
    values = [*s.champion, *s.challenger]
    classes, codes = np.unique(np.concatenate(values).astype(str), return_inverse=True)
    edges = np.cumsum([0] + [v.size for v in values])
    y1, p1, y2, p2 = (codes[edges[i] : edges[i + 1]].astype(np.int64) for i in range(4))
    k, positive = classes.size, None
    if spec.positive_class is not None:
        where = np.flatnonzero(classes == spec.positive_class)
        if where.size == 0 or not (np.any(y1 == where[0]) and np.any(y2 == where[0])):
            raise Unavailable(Status.NOT_APPLICABLE, "no positive labels: F1 is undefined")
        positive = int(where[0])
    if s.paired:
        return _f1_paired(y1, p1, p2, k, positive, settings)
    chal = _f1_side(y2, p2, k, positive, settings, 1)
    champ = _f1_side(y1, p1, k, positive, settings, 0)
    low, high = _mover(chal[0], chal[1], champ[0], champ[1])
    return _Figure(chal[0] - champ[0], low, high)


def _f1_paired(
    y: Ints, p1: Ints, p2: Ints, k: int, positive: int | None, settings: IntervalSettings
) -> _Figure:
    (ty, t1, t2), counts = _cells(y, p1, p2)

    def diff(w: Floats) -> Floats:
        return _f1(w, ty, t2, k, positive) - _f1(w, ty, t1, k, positive)

    low, high = bootstrap_interval(diff, counts, settings)
    return _Figure(float(diff(counts[None, :].astype(np.float64))[0]), low[0], high[0])


def _f1_side(
    y: Ints, p: Ints, k: int, positive: int | None, settings: IntervalSettings, offset: int
) -> tuple[float, tuple[float, float]]:
    (ty, tp), counts = _cells(y, p)

    def f1(w: Floats) -> Floats:
        return _f1(w, ty, tp, k, positive)

    own = IntervalSettings(settings.confidence, settings.resamples, settings.seed + offset)
    low, high = bootstrap_interval(f1, counts, own)
    return float(f1(counts[None, :].astype(np.float64))[0]), (float(low[0]), float(high[0]))


# --- regression -----------------------------------------------------------------------


def _errors(side: tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]) -> Floats:
    return np.asarray(side[1], dtype=np.float64) - np.asarray(side[0], dtype=np.float64)


def _t_figure(diff: float, se: float, df: float, confidence: float) -> _Figure:
    if not (math.isfinite(se) and df > 0) or se == 0:
        return _Figure(diff)
    from scipy import stats  # here, not at import: scipy.stats costs a second of start-up

    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(2 * stats.t.sf(abs(diff) / se, df))
    return _Figure(diff, diff - half, diff + half, p_value)


def _mae(s: _Samples, settings: IntervalSettings) -> _Figure:
    """Paired t on ``|e2| - |e1|`` (shadow) or Welch's t (split)."""
    a1, a2 = np.abs(_errors(s.champion)), np.abs(_errors(s.challenger))
    if s.paired:
        d = a2 - a1
        n = d.size
        se = float(np.std(d, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
        return _t_figure(float(d.mean()), se, n - 1, settings.confidence)
    v1 = float(np.var(a1, ddof=1)) / a1.size if a1.size > 1 else math.nan
    v2 = float(np.var(a2, ddof=1)) / a2.size if a2.size > 1 else math.nan
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (a1.size - 1) + v2**2 / (a2.size - 1)) if se > 0 else 0.0
    return _t_figure(float(a2.mean() - a1.mean()), se, df, settings.confidence)


def _rmse(s: _Samples, settings: IntervalSettings) -> _Figure:
    """Delta method with the covariance of the squared errors (shadow), or the
    square-and-add combination of each side's delta-method CI (split)."""
    s1, s2 = _errors(s.champion) ** 2, _errors(s.challenger) ** 2
    r1, r2 = math.sqrt(float(s1.mean())), math.sqrt(float(s2.mean()))
    if not s.paired:
        low, high = _mover(
            r2, rmse_interval(s2, settings.confidence), r1, rmse_interval(s1, settings.confidence)
        )
        return _Figure(r2 - r1, low, high)
    n = s1.size
    if n < 2 or r1 == 0 or r2 == 0:
        return _Figure(r2 - r1)
    cov = np.cov(s1, s2, ddof=1)
    grad = np.array([-1 / (2 * r1), 1 / (2 * r2)])
    se = math.sqrt(max(float(grad @ cov @ grad), 0.0) / n)
    if se == 0:
        return _Figure(r2 - r1)
    half = z_score(settings.confidence) * se
    p_value = _two_sided_normal(abs(r2 - r1) / se)
    return _Figure(r2 - r1, r2 - r1 - half, r2 - r1 + half, p_value)


# --- the metrics ----------------------------------------------------------------------

FigureFn = Callable[[_Samples, ModelSpec, IntervalSettings], _Figure]
_CLASSIFICATION: dict[str, FigureFn] = {
    "accuracy": lambda s, spec, st: _accuracy(s, st),
    "f1": _f1_figure,
}
_REGRESSION: dict[str, FigureFn] = {
    "mae": lambda s, spec, st: _mae(s, st),
    "rmse": lambda s, spec, st: _rmse(s, st),
}


@register
class ChampionChallenger(Metric):
    """Challenger - champion for each accuracy-type figure, with a confidence interval.

    Figures (one result each, ``label`` = the figure): classification ``accuracy``
    and ``f1`` (binary: the positive class's F1; multiclass: macro F1 over the
    classes present in the truth or predictions); regression ``mae`` and ``rmse``.
    ``value`` = challenger - champion, ``detail`` = the mode, ``n`` = labelled pairs
    (shadow) or labelled rows of both sides (split).

    Mode (option ``mode``: ``auto`` default, ``shadow``, ``split``): ``auto`` picks
    shadow when the windows share at least ``min_samples`` request ids (labelled or
    not), else split.

    - shadow (same requests): rows are paired on shared request ids with a label.
      accuracy: Newcombe's square-and-add paired CI (Wilson intervals, corrected
      correlation), p-value = exact McNemar; f1: percentile bootstrap of the paired
      difference (multinomial over (label, champion, challenger) cells); mae: paired t
      on ``|e_chal| - |e_champ|``; rmse: delta method with the covariance of the
      squared errors (normal p-value).
    - split (own traffic): independent samples. accuracy: Newcombe's hybrid score CI,
      p-value = pooled two-proportion z test; f1: square-and-add of each side's
      bootstrap CI; mae: Welch's t; rmse: square-and-add of each side's delta CI.

    Options: ``mode``, ``confidence`` (0.95), ``bootstrap`` (resamples, 200), ``seed``
    (0). Statuses: ``not_applicable`` without a challenger window (or F1 without
    positive labels); ``insufficient_data`` for an empty window or fewer than
    ``min_samples`` labelled rows; ``no_labels`` when none have joined. Every computed
    figure is ``ok``: policies decide what a difference means.
    """

    key = "champion_challenger"
    family = Family.COMPARISON
    description = "challenger - champion accuracy/F1 or MAE/RMSE with CIs"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        return finite_figures(self._compute(ctx))

    def _compute(self, ctx: EvalContext) -> list[MetricResult]:
        figures = _CLASSIFICATION if ctx.spec.is_classification else _REGRESSION
        try:
            settings = interval_settings(ctx.options)
            samples = _samples(ctx)
        except Unavailable as exc:
            return [self.unavailable(exc, label=f) for f in figures]
        return [self._figure(name, fn, samples, ctx.spec, settings) for name, fn in figures.items()]

    def _figure(
        self, name: str, fn: FigureFn, s: _Samples, spec: ModelSpec, settings: IntervalSettings
    ) -> MetricResult:
        try:
            fig = fn(s, spec, settings)
        except Unavailable as exc:
            return self.status_only(exc.status, s.n, exc.detail, label=name)
        return self.result(
            fig.value,
            s.n,
            label=name,
            p_value=fig.p_value,
            detail=s.mode,
            **bounds(fig.low, fig.high),
        )


@register
class CostDiff(Metric):
    """Challenger - champion cost per 1k predictions and latency p95.

    ``cost_per_1k``: each side's cost per 1k predictions as in ``cost_per_1k`` (same
    ``prices`` and ``window_hours`` options), the champion's from ``ctx.usage`` over
    ``ctx.window``'s predictions, the challenger's from ``ctx.options
    ["challenger_usage"]`` (a polars frame) over ``ctx.challenger``'s; ``n`` = both
    sides' predictions. ``latency_p95``: difference of the p95 latencies (ms), CI
    ``± z·√(se1² + se2²)`` with each ``se`` taken as its order-statistic CI's
    half-width / z (an approximation); ``n`` = both sides' latency samples.
    ``detail`` gives both sides' figures. Missing windows or usage, or fewer than
    ``min_samples`` predictions/samples on a side → ``insufficient_data``.
    """

    key = "cost_diff"
    family = Family.COMPARISON
    description = "challenger - champion cost per 1k predictions and latency p95"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        return finite_figures(self._compute(ctx))

    def _compute(self, ctx: EvalContext) -> list[MetricResult]:
        return [
            self._guard(ctx, "cost_per_1k", self._cost),
            self._guard(ctx, "latency_p95", self._p95),
        ]

    def _guard(
        self, ctx: EvalContext, label: str, fn: Callable[[EvalContext], MetricResult]
    ) -> MetricResult:
        try:
            if ctx.challenger is None:
                raise Unavailable(Status.NOT_APPLICABLE, "no challenger window")
            return fn(ctx)
        except Unavailable as exc:
            return self.unavailable(exc, label=label)

    def _cost(self, ctx: EvalContext) -> MetricResult:
        n1 = prediction_count(ctx.window, ctx.min_samples, "champion: ")
        n2 = prediction_count(ctx.challenger, ctx.min_samples, "challenger: ")
        champion, _ = cost_per_1k(ctx.usage, n1, ctx.options, "champion: ")
        challenger, _ = cost_per_1k(_challenger_usage(ctx), n2, ctx.options, "challenger: ")
        detail = f"champion {champion:.6g}, challenger {challenger:.6g} per 1k predictions"
        return self.result(challenger - champion, n1 + n2, label="cost_per_1k", detail=detail)

    def _p95(self, ctx: EvalContext) -> MetricResult:
        confidence = interval_settings(ctx.options).confidence
        q1, lo1, hi1, n1 = latency_quantile(
            ctx.usage, 0.95, confidence, ctx.min_samples, "champion: "
        )
        q2, lo2, hi2, n2 = latency_quantile(
            _challenger_usage(ctx), 0.95, confidence, ctx.min_samples, "challenger: "
        )
        half = math.hypot((hi1 - lo1) / 2, (hi2 - lo2) / 2)  # z·√(se1² + se2²), se = half-width / z
        diff = q2 - q1
        detail = f"champion {q1:.6g} ms, challenger {q2:.6g} ms"
        return self.result(
            diff,
            n1 + n2,
            label="latency_p95",
            ci_low=diff - half,
            ci_high=diff + half,
            detail=detail,
        )


def _challenger_usage(ctx: EvalContext) -> pl.DataFrame | None:
    usage = ctx.option("challenger_usage", None)
    if usage is not None and not isinstance(usage, pl.DataFrame):
        raise Unavailable(Status.ERROR, "option 'challenger_usage' must be a polars frame")
    return usage
