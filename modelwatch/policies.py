"""Policy, routing and receiver specs (the ``policies``, ``route``, ``receivers`` and
``inhibit_rules`` config sections), following Prometheus Alertmanager's semantics.

A policy is a condition over evaluation results plus actions. Exactly one kind
of condition is given per :class:`Condition`; ``all``/``any`` combine them. ``for: N``
fires after N breaching windows in a row; with ``within: M``, when N of the last M
evaluated windows breach (1 ≤ N ≤ M ≤ 48).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelwatch.domain import NAME_PATTERN
from modelwatch.durations import Duration
from modelwatch.pipelines import Action

__all__ = [
    "Condition",
    "InhibitRule",
    "Matcher",
    "PolicySpec",
    "ReceiverSpec",
    "RouteSpec",
    "Severity",
]

Op = Literal["<", "<=", ">", ">=", "==", "!="]
MAX_WITHIN = 48  # the policy engine reads the last 48 windows
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"?(.*?)\"?\s*$")


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
    """Which results a condition reads. ``column``/``segment`` ``"*"`` make one alert
    per column or segment value; None means the model-level figure / all traffic."""

    metric: str
    column: str | None = None
    label: str | None = None
    segment: str | None = None


class Threshold(Selector):
    op: Op = ">"
    value: float


class Change(Selector):
    """The figure moved against the baseline (the reference run's figure is not
    stored, so ``baseline`` means the first evaluated window) or the champion."""

    relative_to: Literal["baseline", "champion"] = "champion"
    direction: Literal["decrease", "increase", "either"] = "decrease"
    by: float = Field(gt=0)
    percent: bool = False


class StatusIs(Selector):
    status: Literal["breach", "insufficient_data", "no_baseline", "no_labels", "error"] = "breach"


class OutsideBand(Selector):
    """The figure left the threshold band learnt from the version's reference (results
    without a band give no verdict); ``side`` narrows it to falling below or rising above."""

    side: Literal["below", "above", "either"] = "either"


class DriftedShare(_Strict):
    op: Op = ">"
    value: float = Field(ge=0, le=1)


SEQUENTIAL_FIGURES = {"accuracy": False, "log_loss": True, "mae": True, "mse": True}
"""The figures the sequential comparison sums, and whether lower favours the challenger."""


class ChallengerBeatsChampion(_Strict):
    """The challenger beats the champion by more than ``margin``.

    ``test: sequential`` (the default) reads ``champion_challenger_sequential``: the
    always-valid interval at ``alpha`` of (challenger - champion) over every window since
    the comparison started must lie wholly above ``margin`` (below ``-margin`` where lower
    is better), which stays valid however many windows are looked at. ``test: window``
    reads ``champion_challenger``: that window's own confidence interval, a fresh test
    per window. ``lower_is_better`` unset means: by the figure for ``sequential``
    (log loss, MAE and MSE), False for ``window``."""

    metric: str = "accuracy"
    margin: float = Field(0.0, ge=0)
    lower_is_better: bool | None = None
    test: Literal["sequential", "window"] = "sequential"
    alpha: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _figure(self) -> Self:
        if self.test == "sequential" and self.metric not in SEQUENTIAL_FIGURES:
            raise ValueError(
                f"metric {self.metric!r} has no sequential test; test: sequential takes "
                f"{sorted(SEQUENTIAL_FIGURES)} (or set test: window)"
            )
        return self

    @property
    def lower_wins(self) -> bool:
        """Whether a lower figure favours the challenger."""
        if self.lower_is_better is not None:
            return self.lower_is_better
        return self.test == "sequential" and SEQUENTIAL_FIGURES[self.metric]


class Condition(_Strict):
    threshold: Threshold | None = None
    change: Change | None = None
    status: StatusIs | None = None
    outside_band: OutsideBand | None = None
    drifted_share: DriftedShare | None = None
    challenger_beats_champion: ChallengerBeatsChampion | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(f"give exactly one condition kind ({kinds}); got {given or 'none'}")
        if self.all == [] or self.any == []:
            raise ValueError("'all' and 'any' need at least one condition")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.__dict__.items() if v is not None)


class Matcher(_Strict):
    """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex``."""

    name: str
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text)
        if not match:
            raise ValueError(f'{text!r} is not a matcher like severity="critical" or model=~"fr.*"')
        return cls(name=match.group(1), op=match.group(2), value=match.group(3))  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _regex(self) -> Self:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regex {self.value!r}: {exc}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def _matchers(value: Any) -> Any:
    """Accept ``{name: value}`` maps and ``["name=value", ...]`` lists."""
    if isinstance(value, dict):
        return [{"name": k, "op": "=", "value": str(v)} for k, v in value.items()]
    if isinstance(value, list):
        return [Matcher.parse(v).model_dump() if isinstance(v, str) else v for v in value]
    return value


def _notify() -> list[Action]:
    return [Action(notify=True)]


class PolicySpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field("*", description="a model name, or * for every model")
    aliases: list[Literal["champion", "challenger", "shadow"]] | None = Field(
        None, description="only versions with these aliases; default every version"
    )
    condition: Condition
    for_windows: int = Field(
        1, ge=1, alias="for", description="breaching windows needed: in a row, or of `within`"
    )
    within: int | None = Field(
        None,
        ge=1,
        le=MAX_WITHIN,
        description="fire when `for` of the last `within` evaluated windows breach",
    )
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=_notify, min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("within")
    @classmethod
    def _for_within(cls, within: int | None, info: ValidationInfo) -> int | None:
        needed = info.data.get("for_windows")
        if within is not None and needed is not None and needed > within:
            raise ValueError(f"'for' ({needed}) must be at most 'within' ({within})")
        return within


class SlackReceiver(_Strict):
    token: str
    channel: str
    base_url: str = "https://slack.com/api/"


class WebhookReceiver(_Strict):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    max_alerts: int = Field(0, ge=0)


class ReceiverSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    slack: SlackReceiver | None = None
    webhook: WebhookReceiver | None = None
    send_resolved: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.slack is None) == (self.webhook is None):
            raise ValueError("a receiver has exactly one of 'slack' or 'webhook'")
        return self


class RouteSpec(_Strict):
    receiver: str | None = None
    matchers: list[Matcher] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue")
    routes: list[RouteSpec] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return _matchers(value)


class InhibitRule(_Strict):
    source_matchers: list[Matcher]
    target_matchers: list[Matcher]
    equal: list[str] = Field(default_factory=lambda: ["model"])

    @field_validator("source_matchers", "target_matchers", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return _matchers(value)


DEFAULT_ROUTE = RouteSpec.model_validate(
    {
        "group_by": ["alertname", "model"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
)
DEFAULT_INHIBIT = [
    InhibitRule(
        source_matchers=[Matcher(name="severity", value="critical")],
        target_matchers=[Matcher(name="severity", value="warning")],
        equal=["model"],
    )
]
