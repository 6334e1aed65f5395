"""The metric contract: a keyed registry of small classes, frames in, frozen results out.

Every metric is a class with a unique ``key`` registered with :func:`register`.
Config and policies name metrics by key; :func:`get_metric` fails on an unknown
key with the list of known ones. A metric never opens a session: the runner
hands it an :class:`EvalContext` of polars frames and stores what it returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import polars as pl

from evaluators.intervals import IntervalSettings
from modelwatch.domain import ModelSpec, Task
from modelwatch.results import MetricResult, Status

__all__ = [
    "EvalContext",
    "Family",
    "Metric",
    "MetricResult",
    "Status",
    "Unavailable",
    "UnknownMetricError",
    "frame_column",
    "get_metric",
    "interval_settings",
    "metric_keys",
    "register",
]

T = TypeVar("T")


class Family(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    DRIFT = "drift"
    QUALITY = "quality"
    COST = "cost"
    COMPARISON = "comparison"
    ESTIMATION = "estimation"


@dataclass(frozen=True)
class EvalContext:
    """What a metric sees.

    ``window``: the window's events with user column names (features, segment
    keys, ``prediction``, ``score``/``score_<class>``, ``timestamp``,
    ``request_id``) and ``label`` where ground truth has joined.
    ``baseline``: reference rows (features, ``prediction``, scores and the
    target as ``label``) or the champion's window; None when there is none.
    ``usage``: the window's resource samples. ``challenger``: for comparisons,
    the other version's window. ``options``: this metric's settings from the
    monitor (thresholds, features, methods, prices, seeds). ``memo``: what
    :meth:`memoised` keeps; the runner gives a run's contexts one memo, so work
    several metrics share (the joined rows, the class codes) is done once a run.
    """

    spec: ModelSpec
    window: pl.DataFrame
    baseline: pl.DataFrame | None = None
    usage: pl.DataFrame | None = None
    challenger: pl.DataFrame | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    min_samples: int = 1
    memo: dict[Hashable, tuple[object, Any]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def memoised(self, key: Hashable, frame: pl.DataFrame, make: Callable[[], T]) -> T:
        """``make()`` for ``key`` and this very ``frame``, computed once per memo. The memo
        holds the frame, so its id cannot be reused while the entry lives."""
        held = self.memo.get((key, id(frame)))
        if held is not None and held[0] is frame:
            return held[1]  # type: ignore[no-any-return]
        value = make()
        self.memo[(key, id(frame))] = (frame, value)
        return value


class Unavailable(Exception):
    """A figure cannot be computed: carries the status to report, the reason and ``n``."""

    def __init__(self, status: Status, detail: str, n: int = 0) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.n = n


def interval_settings(options: Mapping[str, Any], n: int = 0) -> IntervalSettings:
    """The interval options (:meth:`IntervalSettings.from_options`); Unavailable(error) if bad."""
    try:
        return IntervalSettings.from_options(options)
    except ValueError as exc:
        raise Unavailable(Status.ERROR, str(exc), n) from None


def frame_column(frame: pl.DataFrame, name: str, role: str = "feature") -> str | None:
    """The frame column of ``name`` (prefixed ``<role>:`` when it collides with a reserved name)."""
    return next((c for c in (name, f"{role}:{name}") if c in frame.columns), None)


class Metric(ABC):
    """A metric: ``compute`` turns a context into results (never raises on bad data)."""

    key: ClassVar[str]
    family: ClassVar[Family]
    tasks: ClassVar[frozenset[Task]] = frozenset(Task)
    description: ClassVar[str] = ""

    @abstractmethod
    def compute(self, ctx: EvalContext) -> list[MetricResult]: ...

    def result(self, value: float | None, n: int, **kwargs: Any) -> MetricResult:
        return MetricResult(self.key, value, n, **kwargs)

    def status_only(self, status: Status, n: int, detail: str, **kwargs: Any) -> MetricResult:
        return MetricResult(self.key, None, n, status=status, detail=detail, **kwargs)

    def unavailable(self, exc: Unavailable, **kwargs: Any) -> MetricResult:
        """The status-only result an :class:`Unavailable` stands for."""
        return self.status_only(exc.status, exc.n, exc.detail, **kwargs)


class UnknownMetricError(KeyError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"unknown metric {key!r}; known metrics: {', '.join(metric_keys())}")

    def __str__(self) -> str:
        return str(self.args[0])


_REGISTRY: dict[str, type[Metric]] = {}
M = TypeVar("M", bound=type[Metric])


def register(cls: M) -> M:
    """Class decorator: add a metric to the registry under its ``key``."""
    key = cls.key
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"metric key {key!r} is registered twice")
    _REGISTRY[key] = cls
    return cls


def get_metric(key: str) -> Metric:
    _load_builtin()
    try:
        return _REGISTRY[key]()
    except KeyError:
        raise UnknownMetricError(key) from None


def metric_keys(family: Family | None = None) -> list[str]:
    _load_builtin()
    return sorted(k for k, c in _REGISTRY.items() if family is None or c.family is family)


def _load_builtin() -> None:
    """Import the built-in metric modules, whose classes register themselves."""
    import evaluators.metrics  # noqa: F401
