"""Conditions over evaluation results: which series breach, window by window.

Input is a frame of current results (one row per monitor, version, window,
metric, column, label, segment). A condition yields :class:`Verdict` rows per
*series* (a version plus, where the selector asks for ``*``, a feature or
segment) and window: ``True`` breaching, ``False`` clear. Windows whose figure
is unknown (insufficient data, labels not in yet) give no verdict, so they
neither fire nor resolve an alert. :func:`persistence` turns a series' verdicts
into its state under a policy's ``for`` and ``within``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import polars as pl

from modelwatch import sequential
from modelwatch.policies import (
    ChallengerBeatsChampion,
    Change,
    Condition,
    DriftedShare,
    OutsideBand,
    Selector,
    StatusIs,
    Threshold,
)

__all__ = ["Persistence", "SeriesKey", "Verdict", "evaluate", "needed_metrics", "persistence"]

SeriesKey = tuple[tuple[str, str], ...]
"""Extra alert labels of a series, e.g. (("feature", "age"),)."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_KNOWN = ("ok", "breach")
SEQUENTIAL_METRIC = "champion_challenger_sequential"


@dataclass(frozen=True)
class Verdict:
    version_id: int
    series: SeriesKey
    window_start_us: int
    breach: bool
    value: float | None
    threshold: float | None
    metric: str


@dataclass(frozen=True)
class Persistence:
    """How a series stands after its latest known window: ``breaching`` windows counted
    (in a row, or among the last ``within``) and whether that fires or is pending."""

    breaching: int
    firing: bool
    pending: bool

    def cause(self, for_windows: int, within: int | None) -> str:
        counted = "in a row" if within is None else f"of the last {within}"
        return f"{self.breaching} breaching {counted}, {for_windows} needed"


def persistence(breaches: Sequence[bool], for_windows: int, within: int | None) -> Persistence:
    """``for: N`` over a series' known windows, oldest first: N breaching in a row, or with
    ``within: M`` N of the last M. Counted among the last M, an alert stays firing while N
    of them breach (one clear window does not end it); it is pending while the latest
    window breaches and fewer than N do."""
    if within is None:
        streak = next((i for i, b in enumerate(reversed(breaches)) if not b), len(breaches))
        return Persistence(streak, streak >= for_windows, 0 < streak < for_windows)
    count = sum(breaches[-within:])
    latest = bool(breaches) and breaches[-1]
    return Persistence(count, count >= for_windows, latest and count < for_windows)


def needed_metrics(condition: Condition) -> set[str]:
    if condition.all is not None or condition.any is not None:
        return set().union(*(needed_metrics(c) for c in (condition.all or condition.any or [])))
    if condition.drifted_share is not None:
        return {"data_drift"}
    if condition.challenger_beats_champion is not None:
        sequential = condition.challenger_beats_champion.test == "sequential"
        return {SEQUENTIAL_METRIC if sequential else "champion_challenger"}
    selector = condition.threshold or condition.change or condition.status or condition.outside_band
    assert selector is not None
    return {selector.metric}


def evaluate(condition: Condition, results: pl.DataFrame, champion_id: int | None) -> list[Verdict]:
    kind = condition.kind
    if kind == "threshold":
        return _threshold(_select(results, condition.threshold), condition.threshold)  # type: ignore[arg-type]
    if kind == "status":
        return _status(_select(results, condition.status), condition.status)  # type: ignore[arg-type]
    if kind == "outside_band":
        return _outside_band(_select(results, condition.outside_band), condition.outside_band)  # type: ignore[arg-type]
    if kind == "drifted_share":
        share: DriftedShare = condition.drifted_share  # type: ignore[assignment]
        as_threshold = Threshold(
            metric="data_drift", label="drift_share", op=share.op, value=share.value
        )
        return _threshold(_select(results, as_threshold), as_threshold)
    if kind == "change":
        return _change(results, condition.change, champion_id)  # type: ignore[arg-type]
    if kind == "challenger_beats_champion":
        return _beats(results, condition.challenger_beats_champion)  # type: ignore[arg-type]
    children = [evaluate(c, results, champion_id) for c in (condition.all or condition.any or [])]
    return _combine(children, require_all=condition.all is not None)


def _select(results: pl.DataFrame, sel: Selector) -> pl.DataFrame:
    rows = results.filter(pl.col("metric") == sel.metric)
    rows = rows.filter(pl.col("label") == (sel.label or ""))
    if sel.column != "*":
        rows = rows.filter(pl.col("column_name") == (sel.column or ""))
    if sel.segment != "*":
        rows = rows.filter(pl.col("segment") == (sel.segment or ""))
    return rows


def _series(row: dict[str, object], sel: Selector) -> SeriesKey:
    key: list[tuple[str, str]] = []
    if sel.column == "*" and row["column_name"]:
        key.append(("feature", str(row["column_name"])))
    if sel.segment == "*" and row["segment"]:
        key.append(("segment", str(row["segment"])))
    return tuple(key)


def _threshold(rows: pl.DataFrame, sel: Threshold) -> list[Verdict]:
    compare = _OPS[sel.op]
    return [
        Verdict(
            r["version_id"],
            _series(r, sel),
            r["window_start_us"],
            compare(r["value"], sel.value),
            r["value"],
            sel.value,
            sel.metric,
        )
        for r in rows.iter_rows(named=True)
        if r["status"] in _KNOWN and r["value"] is not None
    ]


def _status(rows: pl.DataFrame, sel: StatusIs) -> list[Verdict]:
    return [
        Verdict(
            r["version_id"],
            _series(r, sel),
            r["window_start_us"],
            r["status"] == sel.status,
            r["value"],
            r["threshold"],
            sel.metric,
        )
        for r in rows.iter_rows(named=True)
    ]


def _outside_band(rows: pl.DataFrame, sel: OutsideBand) -> list[Verdict]:
    """Known figures with a band: breaching below ``band_low`` or above ``band_high``."""
    out = []
    for r in rows.iter_rows(named=True):
        value, low, high = r["value"], r["band_low"], r["band_high"]
        if r["status"] not in _KNOWN or value is None or low is None or high is None:
            continue
        below, above = value < low, value > high
        breach = {"below": below, "above": above, "either": below or above}[sel.side]
        edge = low if sel.side == "below" or (sel.side == "either" and below) else high
        out.append(
            Verdict(
                r["version_id"],
                _series(r, sel),
                r["window_start_us"],
                breach,
                value,
                edge,
                sel.metric,
            )
        )
    return out


def _change(results: pl.DataFrame, sel: Change, champion_id: int | None) -> list[Verdict]:
    rows = _select(results, sel).filter(
        pl.col("status").is_in(_KNOWN) & pl.col("value").is_not_null()
    )
    if sel.relative_to == "champion":
        if champion_id is None:
            return []
        base = rows.filter(pl.col("version_id") == champion_id).select(
            "window_start_us", "column_name", "segment", pl.col("value").alias("base")
        )
        rows = rows.filter(pl.col("version_id") != champion_id).join(
            base, on=["window_start_us", "column_name", "segment"], how="inner"
        )
    else:
        first = pl.col("value").sort_by("window_start_us").first()
        rows = rows.with_columns(first.over(["version_id", "column_name", "segment"]).alias("base"))
    out = []
    for r in rows.iter_rows(named=True):
        delta = r["value"] - r["base"]
        if sel.percent:
            delta = 100.0 * delta / abs(r["base"]) if r["base"] else 0.0
        moved = {"decrease": -delta, "increase": delta, "either": abs(delta)}[sel.direction]
        out.append(
            Verdict(
                r["version_id"],
                _series(r, sel),
                r["window_start_us"],
                moved >= sel.by,
                r["value"],
                r["base"],
                sel.metric,
            )
        )
    return out


def _beats(results: pl.DataFrame, cond: ChallengerBeatsChampion) -> list[Verdict]:
    sequential = cond.test == "sequential"
    metric = SEQUENTIAL_METRIC if sequential else "champion_challenger"
    rows = results.filter(
        (pl.col("metric") == metric)
        & (pl.col("label") == cond.metric)
        & (pl.col("segment") == "")
        & pl.col("status").is_in(_KNOWN)
    )
    out = []
    for r in rows.iter_rows(named=True):
        bounds = _always_valid(r, cond.alpha) if sequential else (r["ci_low"], r["ci_high"])
        if bounds is None or bounds[0] is None or bounds[1] is None:
            continue
        low, high = bounds
        wins = high < -cond.margin if cond.lower_wins else low > cond.margin
        out.append(
            Verdict(
                r["version_id"], (), r["window_start_us"], wins, r["value"], cond.margin, metric
            )
        )
    return out


def _always_valid(row: dict[str, object], alpha: float) -> tuple[float, float] | None:
    """The always-valid interval at the policy's ``alpha`` from the summed statistics the
    sequential comparison stored (``total``, ``planned_n`` in its JSON detail)."""
    try:
        detail = orjson.loads(str(row.get("detail") or ""))
        seq = sequential.from_stats(detail["total"], alpha, float(detail["planned_n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    low, high = float(seq.low), float(seq.high)
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def _combine(children: list[list[Verdict]], require_all: bool) -> list[Verdict]:
    """Per version and window: any series breaching counts for a child; then all/any."""
    per_child: list[dict[tuple[int, int], bool]] = []
    for verdicts in children:
        merged: dict[tuple[int, int], bool] = {}
        for v in verdicts:
            key = (v.version_id, v.window_start_us)
            merged[key] = merged.get(key, False) or v.breach
        per_child.append(merged)
    keys = set().union(*(c.keys() for c in per_child)) if per_child else set()
    out = []
    for version_id, window in sorted(keys):
        known = [c[(version_id, window)] for c in per_child if (version_id, window) in c]
        if require_all and len(known) < len(per_child):
            continue  # some part is unknown for this window: no verdict
        breach = all(known) if require_all else any(known)
        out.append(Verdict(version_id, (), window, breach, None, None, "combined"))
    return out
