"""A model's headline status: ``firing``, ``pending``, ``ok`` or ``no data``.

The rule, in order:

1. an alert of the model is firing → ``firing``;
2. else an alert is pending → ``pending``;
3. else the champion's latest window has a breach that *counts* → ``pending`` (a breach
   no policy has picked up yet). A breach counts when its result has a band learnt
   from the baseline (``band_low``/``band_high``), or a threshold outside the drift
   family, or a drift threshold the user set in the monitor's check options
   (``threshold``, ``thresholds``, ``column_thresholds`` for the column, ``drift_share``
   for the drifted-share row). Drift results always carry a default threshold
   (per column, and 0.5 for the drifted share): those defaults alone never count;
4. else the model has results → ``ok``;
5. else ``no data``.

A model with no alert and no breach of a user-set threshold or a baseline band is green.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelwatch.store.alerts import FIRING, PENDING

__all__ = [
    "DRIFT_SHARE_LABEL",
    "FIRING",
    "NO_DATA",
    "OK",
    "PENDING",
    "Breach",
    "Headline",
    "breach_counts",
    "check_options",
    "headline",
]

OK, NO_DATA = "ok", "no data"  # beside the alert states firing and pending
DRIFT_FAMILY = "drift"
DRIFT_SHARE_LABEL = "drift_share"
THRESHOLD_OPTIONS = ("threshold", "thresholds")


@dataclass(frozen=True)
class Breach:
    """A champion result in breach in its latest window."""

    metric: str
    column: str
    label: str
    family: str
    threshold: float | None
    banded: bool
    monitor_id: int

    def describe(self) -> str:
        column = f" · {self.column}" if self.column else ""
        label = f" [{self.label}]" if self.label else ""
        bound = "outside its baseline band" if self.banded else f"past {self.threshold:.4g}"
        return f"{self.metric}{column}{label} {bound}"


@dataclass(frozen=True)
class Headline:
    status: str
    reasons: list[str] = field(default_factory=list)

    @property
    def tooltip(self) -> str:
        return "\n".join(self.reasons) if self.reasons else self.status


def check_options(checks: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric key, the options of a monitor's checks (the ``spec``'s ``checks``)."""
    found: dict[str, dict[str, Any]] = {}
    for check in checks:
        if isinstance(check, str):
            continue
        options = check.get("options") or {}
        found.setdefault(str(check.get("metric")), {}).update(options)
    return found


def _user_set_drift(breach: Breach, options: Mapping[str, Any]) -> bool:
    if breach.label == DRIFT_SHARE_LABEL and not breach.column:
        return "drift_share" in options
    if any(options.get(key) is not None for key in THRESHOLD_OPTIONS):
        return True
    per_column: Mapping[str, Any] = options.get("column_thresholds") or {}
    return per_column.get(breach.column) is not None


def breach_counts(breach: Breach, options: Mapping[str, Any]) -> bool:
    """Whether ``breach`` is one the user asked for; ``options`` are its check's options."""
    if breach.banded:
        return True
    if breach.threshold is None:
        return False
    if breach.family != DRIFT_FAMILY:
        return True
    return _user_set_drift(breach, options)


def headline(
    alerts: Sequence[tuple[str, str]], breaches: Sequence[str], has_results: bool
) -> Headline:
    """The status from the model's active alerts (``(state, description)``), the
    descriptions of its counted breaches, and whether it has any results."""
    for state in (FIRING, PENDING):
        named = [text for s, text in alerts if s == state]
        if named:
            return Headline(state, [f"{state}: {text}" for text in named])
    if breaches:
        return Headline(PENDING, [f"no alert yet: {text}" for text in breaches])
    return Headline(OK if has_results else NO_DATA)
