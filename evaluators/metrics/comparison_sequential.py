"""Champion vs challenger under repeated looks: an always-valid interval over every window.

Per window, the per-request differences (challenger - champion) of a loss are reduced to
sufficient statistics (``n``, sum, sum of squares; per side for split traffic) and stored
with the result. The runner hands the metric the statistics of the earlier windows of the
same monitor, version and segment (option :data:`PRIOR_OPTION`); the metric sums those
compared with the same champion in the same mode, adds its own, and reports the
normal-mixture always-valid interval of :mod:`modelwatch.sequential` (Johari, Pekelis &
Walsh 2017; Waudby-Smith et al. 2021), which holds however often it is looked at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl

from evaluators.base import EvalContext, Family, Metric, MetricResult, Status, Unavailable, register
from evaluators.metrics.comparison import traffic_mode
from evaluators.metrics.cost import cost_per_1k
from evaluators.metrics.sampled import finite_figures
from evaluators.sequential_keys import CHAMPION_OPTION, KEY, PRIOR_OPTION
from modelwatch import sequential
from modelwatch.domain import ModelSpec, Task

__all__ = [
    "CHAMPION_OPTION",
    "DECISIONS",
    "FIGURES",
    "KEY",
    "PRIOR_OPTION",
    "ChampionChallengerSequential",
    "figures_for",
]

DECISIONS = ("challenger_better", "champion_better", "undecided")
LOWER_IS_BETTER = {"accuracy": False, "log_loss": True, "mae": True, "mse": True}
FIGURES = tuple(LOWER_IS_BETTER)
_EPS = float(np.finfo(np.float64).eps)  # the log_loss metric's clip

Floats = npt.NDArray[np.float64]


def figures_for(spec: ModelSpec) -> list[str]:
    """The figures compared for a model: accuracy (and log loss with scores), or MAE and MSE."""
    if not spec.is_classification:
        return ["mae", "mse"]
    return ["accuracy", "log_loss"] if spec.scores else ["accuracy"]


# --- per-request losses ----------------------------------------------------------------


def _score_names(spec: ModelSpec) -> list[str]:
    return ["score"] if spec.task is Task.BINARY else [f"score_{c}" for c in spec.class_list]


def _losses(frame: pl.DataFrame, spec: ModelSpec, who: str) -> pl.DataFrame:
    """``request_id``, ``label`` and one loss column per figure (null where unknown); accuracy
    is kept as the 0/1 hit, so its difference is challenger - champion accuracy."""
    missing = [c for c in ("request_id", "prediction") if c not in frame.columns]
    if missing:
        raise Unavailable(Status.ERROR, f"{who} window lacks columns {missing}", frame.height)
    label = pl.col("label") if "label" in frame.columns else pl.lit(None)
    if not spec.is_classification:
        err = pl.col("prediction").cast(pl.Float64, strict=False) - label.cast(
            pl.Float64, strict=False
        )
        err = pl.when(err.is_finite()).then(err)
        columns = [err.abs().alias("mae"), (err * err).alias("mse")]
    else:
        truth = label.cast(pl.String, strict=False)
        hit = (pl.col("prediction").cast(pl.String, strict=False) == truth).cast(pl.Float64)
        columns = [hit.alias("accuracy")]
        if spec.scores:
            columns.append(_log_loss(frame, spec, truth))
    out = frame.select(pl.col("request_id").cast(pl.String), label.alias("label"), *columns).unique(
        "request_id", keep="first", maintain_order=True
    )
    return out


def _log_loss(frame: pl.DataFrame, spec: ModelSpec, truth: pl.Expr) -> pl.Expr:
    names = _score_names(spec)
    if any(n not in frame.columns for n in names):
        return pl.lit(None, dtype=pl.Float64).alias("log_loss")
    if spec.task is Task.BINARY:
        score = pl.col("score").cast(pl.Float64, strict=False)
        p = pl.when(truth == spec.positive_class).then(score).otherwise(1.0 - score)
        ok = score.is_between(0.0, 1.0)
    else:
        p = pl.coalesce(
            [
                pl.when(truth == c).then(pl.col(f"score_{c}").cast(pl.Float64, strict=False))
                for c in spec.class_list
            ]
        )
        ok = p.is_between(0.0, 1.0)
    return pl.when(ok).then(-p.clip(_EPS, 1.0 - _EPS).log()).alias("log_loss")


def _triple(values: pl.Series) -> list[float]:
    x = values.drop_nulls().to_numpy().astype(np.float64)
    return [float(x.size), float(x.sum()), float(np.dot(x, x))]


# --- one window ------------------------------------------------------------------------


def window_stats(ctx: EvalContext) -> tuple[str, dict[str, sequential.Stats]]:
    """The window's mode and, per figure, its summed statistics of the differences."""
    if ctx.challenger is None:
        raise Unavailable(Status.NOT_APPLICABLE, "no challenger window")
    figures = figures_for(ctx.spec)
    champion = _losses(ctx.window, ctx.spec, "champion")
    challenger = _losses(ctx.challenger, ctx.spec, "challenger")
    mode = traffic_mode(ctx, champion, challenger)
    if mode == "split":
        return mode, {
            f: {"champion": _triple(champion[f]), "challenger": _triple(challenger[f])}
            for f in figures
        }
    joined = champion.join(challenger, on="request_id", how="inner", suffix="_c")
    return mode, {f: {"pairs": _triple(joined[f"{f}_c"] - joined[f])} for f in figures}


def window_cost(ctx: EvalContext) -> dict[str, list[float]] | None:
    """Each side's ``[cost, predictions]`` in the window, None when usage does not say."""
    sides = {"champion": (ctx.usage, ctx.window), "challenger": (_usage(ctx), ctx.challenger)}
    out: dict[str, list[float]] = {}
    for who, (usage, window) in sides.items():
        n = 0 if window is None else window.height
        if n == 0:
            return None
        try:
            per_1k, _ = cost_per_1k(usage, n, ctx.options)
        except Unavailable:
            return None
        out[who] = [per_1k * n / 1000.0, float(n)]
    return out


def _usage(ctx: EvalContext) -> pl.DataFrame | None:
    usage = ctx.option("challenger_usage", None)
    return usage if isinstance(usage, pl.DataFrame) else None


# --- the history -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Prior:
    window_start_us: int
    stats: sequential.Stats
    cost: dict[str, list[float]] | None


def _parse(detail: str) -> dict[str, Any] | None:
    if not detail.startswith("{"):
        return None
    try:
        value = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def prior_windows(
    rows: Iterable[tuple[int, str, str]], figure: str, champion: str, mode: str
) -> list[_Prior]:
    """The earlier windows' statistics of ``figure`` against the same champion and mode."""
    out = []
    for start, label, detail in rows:
        parsed = _parse(detail) if label == figure else None
        if parsed is None or parsed.get("champion") != champion or parsed.get("mode") != mode:
            continue
        stats = parsed.get("window")
        if isinstance(stats, dict):
            out.append(_Prior(int(start), stats, parsed.get("window_cost")))
    return out


def _sum_cost(costs: Iterable[dict[str, list[float]] | None]) -> float | None:
    """Challenger - champion cost per 1,000 predictions over the windows whose usage is known."""
    known = [c for c in costs if c]
    if not known:
        return None
    totals = {
        who: (sum(c[who][0] for c in known), sum(c[who][1] for c in known))
        for who in ("champion", "challenger")
    }
    (c1, n1), (c2, n2) = totals["champion"], totals["challenger"]
    return 1000.0 * (c2 / n2 - c1 / n1)


def decision(low: float, high: float, lower_is_better: bool) -> str:
    """Which side the always-valid interval of (challenger - champion) favours, at zero."""
    if math.isnan(low) or math.isnan(high):
        return "undecided"
    if low > 0:
        return "champion_better" if lower_is_better else "challenger_better"
    if high < 0:
        return "challenger_better" if lower_is_better else "champion_better"
    return "undecided"


# --- the metric ------------------------------------------------------------------------


def _number(
    options: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = options.get(name, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low < float(value) < high:
        raise Unavailable(
            Status.ERROR, f"option {name!r} must be in ({low}, {high}), got {value!r}"
        )
    return float(value)


@register
class ChampionChallengerSequential(Metric):
    """Challenger - champion on every window since the comparison started, always valid.

    Figures (one result each, ``label`` = the figure): ``accuracy`` (the 0/1 hit; value =
    challenger - champion accuracy, higher favours the challenger) and, for classifiers
    that send scores, ``log_loss``; regression ``mae`` (absolute error) and ``mse``
    (squared error); for losses a negative difference favours the challenger.

    Mode (option ``mode``, as ``champion_challenger``): shadow pairs the requests both
    scored (the statistics of the paired differences), split keeps each side's own
    (``mean(challenger) - mean(champion)`` of independent samples).

    ``value`` is the estimate over the summed windows, ``ci_low``/``ci_high`` the
    always-valid interval at ``alpha`` (option, 0.05), ``p_value`` the always-valid
    p-value of no difference, ``n`` the samples so far (pairs, or rows of both sides).
    ``detail`` is JSON: ``mode``, ``champion``, ``alpha``, ``planned_n`` (option, the
    sample count where the interval is tightest, 10,000), ``window`` (this window's
    statistics), ``total`` (the sum), ``windows`` summed and ``since_us`` (the first
    one's start), ``decision`` (``challenger_better``, ``champion_better`` or
    ``undecided``, at zero difference) and, when usage prices both sides,
    ``cost_diff_per_1k`` (challenger - champion cost per 1,000 predictions over those
    windows). Below two samples or ``min_samples`` in the sum: ``insufficient_data``
    (the window's statistics are still kept, so later windows count them).
    """

    key = KEY
    family = Family.COMPARISON
    description = "challenger - champion since the comparison started, always-valid interval"

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        figures = figures_for(ctx.spec)
        try:
            alpha = _number(ctx.options, "alpha", 0.05, 0.0, 1.0)
            planned = _number(ctx.options, "planned_n", sequential.PLANNED_N, 1.0, math.inf)
            mode, stats = window_stats(ctx)
        except Unavailable as exc:
            return [self.unavailable(exc, label=f) for f in figures]
        cost = window_cost(ctx)
        champion = str(ctx.option(CHAMPION_OPTION, ""))
        rows: Sequence[tuple[int, str, str]] = ctx.option(PRIOR_OPTION, ())
        out = []
        for f in figures:
            prior = prior_windows(rows, f, champion, mode)
            head = {"mode": mode, "champion": champion, "alpha": alpha, "planned_n": planned}
            out.append(self._figure(ctx, f, stats[f], cost, prior, head))
        return finite_figures(out)

    def _figure(
        self,
        ctx: EvalContext,
        figure: str,
        stats: sequential.Stats,
        cost: dict[str, list[float]] | None,
        prior: list[_Prior],
        head: dict[str, Any],
    ) -> MetricResult:
        total = stats
        for p in prior:
            total = sequential.add_stats(total, p.stats)
        seq = sequential.from_stats(total, head["alpha"], head["planned_n"])
        low, high = float(seq.low), float(seq.high)
        n = int(float(seq.t))
        starts = [p.window_start_us for p in prior]
        detail = {
            **head,
            "window": stats,
            "window_cost": cost,
            "total": total,
            "windows": len(prior) + 1,
            "since_us": min(starts) if starts else None,
            "decision": decision(low, high, LOWER_IS_BETTER[figure]),
            "cost_diff_per_1k": _sum_cost([cost, *(p.cost for p in prior)]),
        }
        minimum = max(2, ctx.min_samples)
        if n < minimum or math.isnan(low):
            detail["reason"] = f"{n} samples so far, minimum {minimum}"
            text = orjson.dumps(detail).decode()
            return self.status_only(Status.INSUFFICIENT_DATA, n, text, label=figure)
        return self.result(
            float(seq.estimate),
            n,
            label=figure,
            p_value=float(seq.p_value),
            ci_low=low,
            ci_high=high,
            detail=orjson.dumps(detail).decode(),
        )
