"""`for: N` with `within: M`: N breaching windows of the last M, validated, through the engine."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from alerts.conditions import persistence
from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.policies import PolicySpec
from modelwatch.store.engine import Store
from tests.alerts.helpers import RecordingNotifier, Results, drift

B, C = True, False
DRIFT = {"status": {"metric": "ks", "column": "*", "status": "breach"}}


@pytest.mark.parametrize(
    ("breaches", "within", "expected"),
    [
        ([B, C, B], None, (1, False, True)),  # in a row: the clear window broke the streak
        ([B, B], None, (2, True, False)),
        ([B, C, B], 3, (2, True, False)),
        ([B, C, C, B], 3, (1, False, True)),  # the first breach fell out of the last 3
        ([B, B, C], 3, (2, True, False)),  # still 2 of the last 3: stays firing
        ([B, C, C], 3, (1, False, False)),
        ([], 3, (0, False, False)),
    ],
)
def test_n_of_the_last_m(breaches: list[bool], within: int | None, expected: Any) -> None:
    held = persistence(breaches, 2, within)
    assert (held.breaching, held.firing, held.pending) == expected


def _policy(**extra: Any) -> dict[str, Any]:
    return {"name": "drift", "condition": DRIFT, **extra}


def test_within_is_validated_and_the_error_names_the_field() -> None:
    spec = PolicySpec.model_validate(_policy(**{"for": 2, "within": 3}))
    assert (spec.for_windows, spec.within) == (2, 3)
    assert spec.model_dump(by_alias=True)["within"] == 3
    assert PolicySpec.model_validate(_policy()).within is None
    for bad, field, message in (
        ({"for": 4, "within": 3}, "within", "'for' (4) must be at most 'within' (3)"),
        ({"within": 0}, "within", "greater than or equal to 1"),
        ({"within": 49}, "within", "less than or equal to 48"),
        ({"for": 0, "within": 3}, "for", "greater than or equal to 1"),
    ):
        with pytest.raises(ValidationError) as caught:
            PolicySpec.model_validate(_policy(**bad))
        [error] = caught.value.errors()
        assert error["loc"] == (field,) and message in error["msg"]


def test_the_engine_fires_on_two_of_three_windows(store: Store) -> None:
    results = Results(store)
    config = Config.model_validate(
        {
            "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/"}}],
            "route": {"receiver": "oncall", "group_wait": "0s"},
            "policies": [_policy(**{"for": 2, "within": 3})],
        }
    )
    notifier = RecordingNotifier()
    service = AlertingService(
        store,
        results.registry,
        config,
        "test",
        notifiers={"oncall": notifier},
        retry=RetryPolicy(initial_s=0.0, jitter=0.0),
    )

    def states() -> list[str]:
        return [a.state for a in service.alerts.all()]

    results.window(0, [drift("age", 0.3, True)])
    service.cycle()
    assert states() == ["pending"]
    results.window(1, [drift("age", 0.01, False)])
    service.cycle()
    assert states() == ["inactive"]  # 1 of 3, latest clear
    results.window(2, [drift("age", 0.3, True)])
    service.cycle()
    assert states() == ["firing"]  # 2 of the last 3, not in a row
    [alert] = service.alerts.all()
    causes = [t["cause"] for t in service.alerts.transitions(alert.id)]
    assert causes[-1].endswith("(2 breaching of the last 3, 2 needed)")
    results.window(3, [drift("age", 0.3, True)])
    results.window(4, [drift("age", 0.01, False)])
    service.cycle()
    assert states() == ["firing"]  # windows 2-4: still 2 breaching, one clear window
    results.window(5, [drift("age", 0.01, False)])
    service.cycle()
    assert states() == ["resolved"]
