"""The whole path: evaluation results in, Slack messages out, through slack-sdk against a
local Slack Web API server, with rate limits, server errors and recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store.engine import Store
from tests.alerts.fake_slack import FakeSlack
from tests.alerts.helpers import Results, accuracy, drift, slack_service
from tests.alerts.test_alerting import Clock


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token="xoxb-test", channels={"ml-oncall": "C0ONCALL"}) as server:
        yield server


def _service(store: Store, results: Results, slack: FakeSlack, clock: Clock) -> AlertingService:
    policy = {"name": "feature-drift", "condition": {"status": {"metric": "ks", "column": "*"}}}
    service: AlertingService = slack_service(
        store, results, slack.base_url, [policy], clock=clock, route={"group_interval": "1m"}
    )
    return service


def _text(message: Any) -> str:
    return json.dumps(message.blocks) + str(message.text)


def test_results_in_slack_thread_out_through_rate_limits_and_outages(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock)
    results.window(0, [drift("age", 0.41, True), drift("plan", 0.33, True), accuracy(0.9)])
    slack.fail_next(1, status=429, retry_after=0)
    slack.fail_next(1, status=500)
    service.cycle()

    top = slack.top_level()
    assert len(top) == 1, "one grouped message for the model, however many retries"
    body = _text(top[0])
    for expected in ("churn", "v1", "age", "plan", "feature-drift", "0.41"):
        assert expected in body, expected
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 500, 200]
    attempts = service.outbox.attempts(1)
    assert [a["status_code"] for a in attempts] == [429, 500, 200] and attempts[-1]["ok"] == 1

    results.window(1, [drift("age", 0.01, False), drift("plan", 0.02, False), accuracy(0.9)])
    clock.advance(minutes=2)
    service.cycle()
    assert len(slack.top_level()) == 1
    replies = slack.replies(top[0].ts)
    assert len(replies) == 1 and "resolved" in _text(replies[0]).lower()
    parent = slack.message(top[0].ts)
    assert parent.edits == 1 and "RESOLVED" in _text(parent)


def test_a_slack_outage_delays_delivery_until_it_recovers(store: Store, slack: FakeSlack) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock)
    service.delivery.retry = RetryPolicy(initial_s=3600.0, jitter=0.0)  # retries wait an hour
    results.window(0, [drift("age", 0.41, True)])
    slack.fail_next(1, status=503)
    service.cycle()
    assert slack.top_level() == [] and service.outbox.counts() == {"pending": 1}
    with store.write() as conn:  # an hour passes for the outbox
        conn.exec_driver_sql("UPDATE deliveries SET next_attempt_at = created_at")
    service.cycle()
    assert len(slack.top_level()) == 1 and service.outbox.counts() == {"delivered": 1}


def test_an_unknown_channel_is_a_permanent_failure(store: Store, slack: FakeSlack) -> None:
    results, clock = Results(store), Clock()
    config = Config.model_validate(
        {
            "receivers": [
                {
                    "name": "oncall",
                    "slack": {"token": "xoxb-test", "channel": "#nope", "base_url": slack.base_url},
                }
            ],
            "route": {"receiver": "oncall", "group_wait": "0s"},
            "policies": [{"name": "d", "condition": {"status": {"metric": "ks", "column": "*"}}}],
        }
    )
    service = AlertingService(store, results.registry, config, "t", clock=clock)
    results.window(0, [drift("age", 0.41, True)])
    service.cycle()
    assert service.outbox.counts() == {"dead": 1}
    assert "channel_not_found" in service.outbox.attempts(1)[0]["detail"]


def test_a_new_incident_after_resolution_starts_a_new_message(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock)
    results.window(0, [drift("age", 0.41, True)])
    service.cycle()
    results.window(1, [drift("age", 0.01, False)])
    clock.advance(minutes=2)
    service.cycle()
    results.window(2, [drift("age", 0.52, True)])
    clock.advance(minutes=2)
    service.cycle()
    top = slack.top_level()
    assert len(top) == 2, "the second incident is a new message, not a reply in the old thread"
    assert len(slack.replies(top[0].ts)) == 1 and slack.replies(top[1].ts) == []
    assert "feature-drift · churn" in _text(top[1]) and "vv1" not in _text(top[1])
    assert "churn served traffic (v1)" in _text(top[1]), "input drift judges the traffic"
