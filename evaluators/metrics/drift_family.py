"""The verdict of a drift check over the columns of one run: multiplicity correction and
effect-size floors.

A drift check tests every column of a window at once, so a window with no drift at all
crosses a per-column p < 0.05 somewhere most of the time (25 columns: 1 - 0.95^25 = 72%).
The p-values of the columns tested in one run (one metric, one window, one segment) are
therefore adjusted together (``correction``):

- ``holm`` (default): Holm's step-down method (Holm 1979, *Scand. J. Statist.* 6:65-70).
  The chance that a window without drift flags any column is at most the threshold,
  whatever the dependence between the columns; never less powerful than Bonferroni.
- ``bonferroni``: every p-value times the number of tests.
- ``bh``: Benjamini-Hochberg (1995, *J. R. Statist. Soc. B* 57:289-300): controls the
  expected share of false discoveries among the flagged columns instead (independent or
  positively dependent tests); more flagged columns when many really moved.
- ``none``: each column at its own threshold (evidently's rule).

All three equal ``statsmodels.stats.multitest.multipletests`` (``holm``, ``bonferroni``,
``fdr_bh``) and BH equals ``scipy.stats.false_discovery_control``.

A tested column drifts only when its adjusted p-value passes the threshold AND its effect
size reaches ``min_effect``: on large windows a test is significant for shifts far too
small to matter, and the floor keeps those ``ok`` with a detail that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from modelwatch.results import MetricResult, Status

__all__ = ["CORRECTIONS", "Tested", "adjust", "correction_of", "decide"]

CORRECTIONS = ("holm", "bonferroni", "bh", "none")
FloatArray = npt.NDArray[np.float64]
Rule = Callable[[float, float | None, float], bool]


def correction_of(value: object) -> str:
    """The ``correction`` option checked against the known names."""
    name = "holm" if value is None else str(value).lower()
    if name not in CORRECTIONS:
        raise ValueError(f"unknown correction {value!r}; known: {', '.join(CORRECTIONS)}")
    return name


def adjust(p_values: Sequence[float] | FloatArray, how: str) -> FloatArray:
    """Adjusted p-values in the input's order (compare each with the threshold)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if how == "none" or m == 0:
        return p.copy()
    if how == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if how == "holm":
        steps = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif how == "bh":
        steps = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {how!r}; known: {', '.join(CORRECTIONS)}")
    out = np.empty(m, dtype=np.float64)
    out[order] = np.minimum(steps, 1.0)
    return out


@dataclass(frozen=True)
class Tested:
    """A tested column before its run's correction: the result carries the statistic, the
    raw p-value and the effect; ``decide`` sets the adjusted p-value, status and detail."""

    result: MetricResult
    rule: Rule
    min_effect: float
    effect_name: str
    method: str
    notes: str = ""


def decide(items: Sequence[MetricResult | Tested], how: str) -> list[MetricResult]:
    """The final results, in order: every tested column judged on its adjusted p-value
    (over the columns of this run that have a p-value) and its effect floor."""
    tested = [(i, x) for i, x in enumerate(items) if isinstance(x, Tested)]
    valid = [(i, x) for i, x in tested if x.result.p_value is not None]
    adjusted = adjust([x.result.p_value for _, x in valid], how)  # type: ignore[misc]
    by_index = {i: float(p) for (i, _), p in zip(valid, adjusted, strict=True)}
    out: list[MetricResult] = []
    for i, item in enumerate(items):
        if isinstance(item, Tested):
            out.append(_judge(item, by_index.get(i), how, len(valid)))
        else:
            out.append(item)
    return out


def _judge(item: Tested, p_adj: float | None, how: str, family: int) -> MetricResult:
    res = item.result
    threshold = res.threshold if res.threshold is not None else 0.0
    significant = p_adj is not None and item.rule(res.value or 0.0, p_adj, threshold)
    effect = res.effect
    big = effect is not None and effect >= item.min_effect
    if p_adj is None:
        test = "no p-value"
    elif how == "none":
        test = f"p={p_adj:.3g}"
    else:
        test = f"p_adj={p_adj:.3g}, {how} over {family}"
    shown = "n/a" if effect is None else f"{effect:.3g}"
    size = f"effect {shown} ({item.effect_name})"
    if significant and big:
        verdict = f"drift ({test}), {size} >= min_effect {item.min_effect:g}"
    elif significant:
        verdict = f"significant ({test}), {size} below min_effect {item.min_effect:g}"
    else:
        verdict = f"not significant ({test}), {size}"
    return replace(
        res,
        p_adjusted=p_adj,
        status=Status.BREACH if significant and big else Status.OK,
        detail=f"{item.method}; {verdict}{item.notes}",
    )
