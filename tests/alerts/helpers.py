"""Building blocks for alerting tests: results written as evaluation runs, a recording notifier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.notifiers.base import Notification, Notifier
from modelwatch.domain import Alias, ModelSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.outbox import DeliveryOutcome
from modelwatch.results import MetricResult, Status
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.runs import PlannedRun, RunStore
from tests.conftest import CHURN_SPEC

HOUR_US = 3600 * 1_000_000
T0_US = 1_763_596_800 * 1_000_000


@dataclass
class RecordingNotifier(Notifier):
    """Answers with the scripted outcomes (then ok) and keeps every notification."""

    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    sent: list[Notification] = field(default_factory=list)
    attempts: int = 0

    def send(self, notification: Notification) -> DeliveryOutcome:
        self.attempts += 1
        if self.outcomes:
            return self.outcomes.pop(0)
        self.sent.append(notification)
        return DeliveryOutcome(ok=True, thread={"ts": f"ts-{len(self.sent)}"})


class Results:
    """Writes metric results for window ``i`` (hours after T0) as finished runs."""

    def __init__(self, store: Store, models: Sequence[str] = ("churn",)) -> None:
        self.store = store
        self.registry = Registry(store)
        self.runs = RunStore(store)
        self.monitors: dict[str, int] = {}
        for name in models:
            model = self.registry.create_model(
                ModelSpec.model_validate({**CHURN_SPEC, "name": name}), "t"
            )
            self.registry.create_version(model, "v1", Alias.CHAMPION, "t")
            self.registry.create_version(model, "v2", Alias.CHALLENGER, "t")
            spec = MonitorSpec.model_validate(
                {"name": f"{name}-hourly", "model": name, "checks": []}
            )
            self.monitors[name] = MonitorStore(store, self.registry).create(spec, "t").id
        self._state = 0

    def window(
        self, i: int, results: list[MetricResult], model: str = "churn", version: str = "v1"
    ) -> None:
        record = self.registry.get_version(self.registry.get_model(model), version)
        self._state += 1
        start = T0_US + i * HOUR_US
        planned = PlannedRun(
            self.monitors[model], record.id, start, start + HOUR_US, "", f"s{self._state}", 100, 100
        )
        self.runs.plan([planned])
        run = self.runs.claim("test", [self.monitors[model]])
        assert run is not None
        self.runs.finish(run, [("", r) for r in results], 1.0)


def accuracy(value: float, **kw: Any) -> MetricResult:
    return MetricResult("accuracy", value, 500, **kw)


def drift(column: str, value: float, breach: bool) -> MetricResult:
    return MetricResult(
        "ks", value, 500, Status.BREACH if breach else Status.OK, column=column, p_value=0.01
    )


def slack_service(
    store: Store,
    results: Results,
    slack_url: str,
    policies: list[dict[str, Any]],
    *,
    clock: Any = None,
    route: dict[str, Any] | None = None,
    inhibit_rules: list[dict[str, Any]] | None = None,
) -> Any:
    """An alerting service whose one receiver is Slack at ``slack_url`` (a local
    Slack-shaped server), every alert grouped by model and sent at once, no retry wait."""
    from alerts.service import AlertingService
    from modelwatch.config import Config
    from modelwatch.outbox import RetryPolicy

    spec: dict[str, Any] = {
        "receivers": [
            {
                "name": "oncall",
                "slack": {"token": "xoxb-test", "channel": "#ml-oncall", "base_url": slack_url},
            }
        ],
        "route": {"receiver": "oncall", "group_by": ["model"], "group_wait": "0s", **(route or {})},
        "policies": policies,
    }
    if inhibit_rules is not None:
        spec["inhibit_rules"] = inhibit_rules
    retry = RetryPolicy(initial_s=0.0, jitter=0.0)
    kwargs = {} if clock is None else {"clock": clock}
    return AlertingService(
        store, results.registry, Config.model_validate(spec), "t", retry=retry, **kwargs
    )
