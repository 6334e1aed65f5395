"""Policies to notifications: pending/firing/resolved, grouping, repeat, silences, inhibition,
retries through the outbox; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import DeliveryOutcome, RetryPolicy
from modelwatch.policies import Matcher
from modelwatch.results import Status
from modelwatch.store.engine import Store
from modelwatch.webhooks import generate_secret
from tests.alerts.helpers import RecordingNotifier, Results, accuracy, drift


def _config(**extra: Any) -> Config:
    base: dict[str, Any] = {
        "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/"}}],
        "route": {
            "receiver": "oncall",
            "group_by": ["model"],
            "group_wait": "0s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "policies": [
            {
                "name": "accuracy-low",
                "model": "churn",
                "for": 2,
                "severity": "critical",
                "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
            },
            {
                "name": "feature-drift",
                "severity": "warning",
                "condition": {"status": {"metric": "ks", "column": "*"}},
            },
        ],
    }
    base.update(extra)
    return Config.model_validate(base)


class Clock:
    """The dispatcher's clock: starts just past the group_wait of groups made now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def world(store: Store) -> tuple[Results, RecordingNotifier, AlertingService, Clock]:
    results = Results(store)
    notifier = RecordingNotifier()
    clock = Clock()
    service = AlertingService(
        store,
        results.registry,
        _config(),
        "test",
        notifiers={"oncall": notifier},
        retry=RetryPolicy(initial_s=0.0, jitter=0.0),
        clock=clock,
    )
    return results, notifier, service, clock


def _states(service: AlertingService) -> dict[str, str]:
    return {
        a.labels["alertname"] + "/" + a.labels.get("feature", ""): a.state
        for a in service.alerts.all()
    }


def test_pending_then_firing_after_n_windows_then_resolved(world: Any) -> None:
    results, notifier, service, clock = world
    results.window(0, [accuracy(0.9)])
    results.window(1, [accuracy(0.7)])
    service.cycle()
    assert _states(service) == {"accuracy-low/": "pending"}
    assert notifier.sent == []  # pending alerts are not notified
    results.window(2, [accuracy(0.6)])
    service.cycle()
    assert _states(service) == {"accuracy-low/": "firing"}
    assert len(notifier.sent) == 1
    n = notifier.sent[0]
    assert n.status == "firing" and n.alerts[0].labels["severity"] == "critical"
    assert n.alerts[0].value == pytest.approx(0.6) and n.alerts[0].trend == pytest.approx(
        [0.9, 0.7, 0.6]
    )
    assert "accuracy of churn v1 is 0.6" in n.alerts[0].annotations["summary"]
    results.window(3, [accuracy(0.95)])
    clock.advance(minutes=6)
    service.cycle()
    assert _states(service) == {"accuracy-low/": "resolved"}
    assert [x.status for x in notifier.sent] == ["firing", "resolved"]
    assert notifier.sent[1].thread == {
        "ts": "ts-1"
    }  # the update goes to the first message's thread
    alert = service.alerts.all()[0]
    causes = [(t["from_state"], t["to_state"]) for t in service.alerts.transitions(alert.id)]
    assert causes == [("inactive", "pending"), ("pending", "firing"), ("firing", "resolved")]


def test_unknown_windows_neither_fire_nor_resolve(world: Any) -> None:
    results, notifier, service, clock = world
    results.window(0, [accuracy(0.5)])
    results.window(1, [accuracy(0.5)])
    service.cycle()
    assert _states(service) == {"accuracy-low/": "firing"}
    results.window(2, [accuracy(None, status=Status.NO_LABELS)])  # type: ignore[arg-type]
    clock.advance(minutes=10)
    service.cycle()
    assert _states(service) == {"accuracy-low/": "firing"}
    assert len(notifier.sent) == 1


def test_alerts_of_a_model_are_grouped_and_repeated(world: Any) -> None:
    results, notifier, service, clock = world
    results.window(
        0, [drift("age", 0.4, True), drift("plan", 0.3, True), drift("note", 0.01, False)]
    )
    service.cycle()
    assert _states(service) == {"feature-drift/age": "firing", "feature-drift/plan": "firing"}
    assert len(notifier.sent) == 1  # one notification for the model's group
    assert sorted(a.labels["feature"] for a in notifier.sent[0].alerts) == ["age", "plan"]
    clock.advance(minutes=30)
    service.cycle()
    assert len(notifier.sent) == 1  # unchanged: nothing until repeat_interval
    clock.advance(hours=4)
    service.cycle()
    assert len(notifier.sent) == 2 and len(notifier.sent[1].alerts) == 2  # repeated


def test_changes_wait_for_group_interval(world: Any) -> None:
    results, notifier, service, clock = world
    results.window(0, [drift("age", 0.4, True)])
    service.cycle()
    results.window(1, [drift("age", 0.4, True), drift("plan", 0.3, True)])
    clock.advance(minutes=2)
    service.cycle()
    assert len(notifier.sent) == 1  # a new alert joins, but group_interval (5m) has not passed
    clock.advance(minutes=4)
    service.cycle()
    assert len(notifier.sent) == 2 and len(notifier.sent[1].alerts) == 2


def test_silences_mute_matching_alerts(world: Any, store: Store) -> None:
    results, notifier, service, clock = world
    service.alerts.create_silence(
        [Matcher.parse('feature="age"')],
        clock.now - timedelta(hours=1),
        clock.now + timedelta(hours=1),
        "oncall",
        "known issue",
    )
    results.window(0, [drift("age", 0.4, True), drift("plan", 0.3, True)])
    service.cycle()
    assert [a.labels["feature"] for a in notifier.sent[0].alerts] == ["plan"]


def test_critical_alerts_inhibit_warnings_of_the_same_model(world: Any) -> None:
    results, notifier, service, _clock = world
    results.window(0, [accuracy(0.5), drift("age", 0.4, True)])
    results.window(1, [accuracy(0.5), drift("age", 0.4, True)])
    service.cycle()
    states = _states(service)
    assert states["accuracy-low/"] == "firing" and states["feature-drift/age"] == "firing"
    names = [a.labels["alertname"] for n in notifier.sent for a in n.alerts]
    assert names == ["accuracy-low"]  # the warning is muted while the critical fires


def test_a_policy_without_notify_fires_but_tells_no_one(store: Store) -> None:
    """``actions: [retrain]`` (or promote) alone: the alert fires, the pipeline acts,
    nobody is paged; the same policy with ``notify`` is told as usual."""
    quiet = {"retrain": {"pipeline": "trainer"}}
    drift_policy = {"condition": {"status": {"metric": "ks", "column": "*"}}, "severity": "warning"}
    config = _config(
        pipelines=[{"name": "trainer", "url": "http://127.0.0.1:9/", "secret": generate_secret()}],
        policies=[
            {**drift_policy, "name": "drift-retrain", "actions": [quiet]},
            {**drift_policy, "name": "drift-page", "actions": ["notify", quiet]},
        ],
    )
    results, notifier = Results(store), RecordingNotifier()
    service = AlertingService(
        store, results.registry, config, "test", notifiers={"oncall": notifier}, clock=Clock()
    )
    results.window(0, [drift("age", 0.4, True)])
    service.cycle()
    assert _states(service) == {"drift-retrain/age": "firing", "drift-page/age": "firing"}
    names = [a.labels["alertname"] for n in notifier.sent for a in n.alerts]
    assert names == ["drift-page"]


def test_a_failing_receiver_delays_but_never_loses(world: Any) -> None:
    results, notifier, service, _clock = world
    notifier.outcomes = [
        DeliveryOutcome(ok=False, status_code=429, retry_after=0.0, detail="rate limited"),
        DeliveryOutcome(ok=False, status_code=503, detail="down"),
    ]
    results.window(0, [drift("age", 0.4, True)])
    service.cycle()
    assert notifier.attempts == 3 and len(notifier.sent) == 1  # retried until delivered
    counts = service.outbox.counts()
    assert counts == {"delivered": 1}
    attempts = service.outbox.attempts(1)
    assert [(a["ok"], a["status_code"]) for a in attempts] == [(0, 429), (0, 503), (1, None)]


def test_permanent_failure_is_dead_not_retried(world: Any) -> None:
    results, notifier, service, _clock = world
    notifier.outcomes = [DeliveryOutcome(ok=False, permanent=True, detail="channel_not_found")]
    results.window(0, [drift("age", 0.4, True)])
    service.cycle()
    assert notifier.attempts == 1 and service.outbox.counts() == {"dead": 1}


def test_the_first_notification_waits_for_group_wait(store: Store) -> None:
    results, notifier, clock = Results(store), RecordingNotifier(), Clock()
    config = _config(route={"receiver": "oncall", "group_by": ["model"], "group_wait": "30s"})
    service = AlertingService(
        store, results.registry, config, "t", notifiers={"oncall": notifier}, clock=clock
    )
    results.window(0, [drift("age", 0.4, True)])
    service.cycle()
    clock.advance(seconds=20)
    results.window(1, [drift("age", 0.4, True), drift("plan", 0.3, True)])
    service.cycle()
    assert notifier.sent == []  # still gathering the group
    clock.advance(seconds=11)
    service.cycle()
    assert len(notifier.sent) == 1 and len(notifier.sent[0].alerts) == 2  # both, in one message
