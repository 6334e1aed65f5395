"""Monitor specs: what to evaluate for a model, over which windows, against what.

A monitor is declared in the config (``monitors:``) or with ``POST
/v1/monitors``. Metric keys are checked against the evaluators' registry by the
process wiring (the core does not import the evaluators).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelwatch.domain import NAME_PATTERN
from modelwatch.durations import Duration

__all__ = ["Baseline", "CheckSpec", "MonitorSpec", "Prices"]

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


class Baseline(StrEnum):
    REFERENCE = "reference"
    CHAMPION = "champion"


class CheckSpec(BaseModel):
    """One metric to run, with its options (threshold, features, methods, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    options: dict[str, Any] = Field(default_factory=dict)


class Prices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_hour: float = Field(0.0, ge=0, description="$ per CPU-hour")
    gpu_hour: float = Field(0.0, ge=0, description="$ per GPU-hour")
    gb_hour: float = Field(0.0, ge=0, description="$ per GB-hour of memory")


class MonitorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(pattern=NAME_PATTERN)
    window: Duration = Field(3600, description="tumbling window, aligned to the clock (UTC)")
    schedule: str = Field("1m", description="an interval ('5m') or a 5-field cron expression")
    label_delay: Duration = Field(
        7 * 86_400, description="how long a window's accuracy is recomputed as labels arrive"
    )
    baseline: Baseline = Baseline.REFERENCE
    segments: list[str] = Field(
        default_factory=list, description="segment keys to evaluate per value"
    )
    checks: list[CheckSpec] = Field(
        default_factory=list, description="empty: the defaults for the task"
    )
    min_samples: int = Field(30, ge=1)
    versions: list[str] | None = Field(None, description="versions to evaluate; default all")
    backfill: Duration = Field(30 * 86_400, description="how far back missed windows are caught up")
    prices: Prices = Field(default_factory=lambda: Prices.model_validate({}))

    @field_validator("checks", mode="before")
    @classmethod
    def _plain_keys(cls, value: Any) -> Any:
        """Allow ``checks: [accuracy, {metric: ks, options: {...}}]``."""
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from modelwatch.durations import parse_duration

        fields = value.split()
        if len(fields) == 5:
            if not all(_CRON_FIELD.match(f) for f in fields):
                raise ValueError(f"{value!r} is not a 5-field cron expression")
            return value
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("the schedule interval must be at least 1s")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.window < 60:
            raise ValueError("window must be at least 1m")
        if 86_400 % self.window and self.window % 86_400:
            raise ValueError("window must divide a day (e.g. 15m, 1h, 6h) or be whole days")
        return self

    @property
    def is_cron(self) -> bool:
        return len(self.schedule.split()) == 5
