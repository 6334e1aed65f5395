"""Durations are shown as they were written: ``7d`` stays ``7d``."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from modelwatch.durations import Duration
from modelwatch.monitors import MonitorSpec


class _Spec(BaseModel):
    every: Duration = Field(10, ge=1)


@pytest.mark.parametrize("written", ["7d", "1w", "60m", "1h", "90s", "14d"])
def test_durations_echo_as_written(written: str) -> None:
    spec = _Spec(every=written)  # type: ignore[arg-type]
    assert spec.model_dump(mode="json") == {"every": written}
    assert _Spec.model_validate_json(spec.model_dump_json()).model_dump(mode="json") == {
        "every": written
    }


def test_seconds_and_bounds() -> None:
    assert _Spec(every=604_800).model_dump(mode="json") == {"every": "1w"}
    assert _Spec(every="7d").every == 604_800  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        _Spec(every=0)
    with pytest.raises(ValidationError, match="not a duration"):
        _Spec(every="7x")  # type: ignore[arg-type]


def test_monitor_window_is_echoed_as_written() -> None:
    spec = MonitorSpec.model_validate({"name": "m", "model": "churn", "checks": [], "window": "7d"})
    assert spec.model_dump(mode="json")["window"] == "7d"
