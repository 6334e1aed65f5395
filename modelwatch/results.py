"""Evaluation results: one computed figure per metric, column and class.

Defined in the core so that the store's mapper can write them; metrics in
``evaluators`` produce them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MetricResult", "Status"]


class Status(StrEnum):
    OK = "ok"
    BREACH = "breach"  # the figure crossed its threshold
    INSUFFICIENT_DATA = "insufficient_data"  # fewer rows than the minimum sample size
    NO_BASELINE = "no_baseline"  # the metric needs a baseline the version does not have
    NO_LABELS = "no_labels"  # no ground truth joined yet
    NOT_APPLICABLE = "not_applicable"  # e.g. a single-class window for ROC AUC
    ERROR = "error"  # the metric failed; ``detail`` says why


@dataclass(frozen=True)
class MetricResult:
    """One computed figure.

    ``column`` is what the figure is about (a feature, ``prediction``, ``score``,
    ``target``) or None for model-level figures; ``label`` narrows it further (a
    class, a quantile such as ``p95``, a confusion cell ``actual|predicted``).
    ``p_adjusted`` is ``p_value`` adjusted for the other tests of the same run (drift
    tests over many columns) and ``effect`` the effect size a verdict also needed.
    ``ci_low``/``ci_high`` bound the figure's sampling error; ``band_low``/``band_high``
    are the threshold band learnt from the version's reference, outside which the figure
    is a ``breach`` (unless the user set a threshold, which wins).
    """

    metric: str
    value: float | None
    n: int
    status: Status = Status.OK
    column: str | None = None
    label: str | None = None
    p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None
    detail: str = ""
    p_adjusted: float | None = None
    effect: float | None = None
    band_low: float | None = None
    band_high: float | None = None
