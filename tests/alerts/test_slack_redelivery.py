"""A redelivered Slack notification is posted once: each message carries its outbox
delivery's key as message metadata, and a repeat that may have reached Slack first
looks for that key in the channel's history (or the thread's replies)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from alerts.notifiers import slack as slack_module
from alerts.notifiers.base import Notification
from alerts.notifiers.slack import METADATA_EVENT, SlackNotifier
from alerts.service import AlertingService
from demo.slack_sink import SlackSink
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from tests.alerts.fake_slack import FakeSlack
from tests.alerts.helpers import Results, drift
from tests.alerts.test_alerting import Clock
from tests.alerts.test_slack import alert, notification

TOKEN = "xoxb-test-token"
CHANNEL = "C0ALERTS"
HISTORY, REPLIES, POST = "conversations.history", "conversations.replies", "chat.postMessage"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, channels={"alerts": CHANNEL}) as server:
        yield server


def notifier(slack: FakeSlack, channel: str = CHANNEL) -> SlackNotifier:
    """A fresh notifier: what a restarted worker has, knowing nothing of earlier attempts."""
    return SlackNotifier(TOKEN, channel, base_url=slack.base_url, timeout=2)


def attempt(n: int, key: str = "k1", **changes: Any) -> Notification:
    queued = datetime.now(UTC) - timedelta(seconds=30)
    return notification(idempotency_key=key, attempt=n, queued_at=queued, **changes)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_every_message_carries_its_delivery_key_as_metadata(slack: FakeSlack) -> None:
    first = notifier(slack).send(attempt(1, "k1"))
    notifier(slack).send(attempt(1, "k2", thread=first.thread))

    assert [m.metadata for m in slack.messages] == [
        {"event_type": METADATA_EVENT, "event_payload": {"delivery": "k1"}},
        {"event_type": METADATA_EVENT, "event_payload": {"delivery": "k2"}},
    ]
    assert slack.calls_to(HISTORY) == [], "a first attempt does not look"


def test_a_repeat_after_slack_accepted_the_post_does_not_post_again(slack: FakeSlack) -> None:
    notifier(slack).send(attempt(1))  # Slack took it; the worker died before recording it

    outcome = notifier(slack).send(attempt(2))

    [message] = slack.messages
    assert outcome.ok and outcome.thread == {"channel": CHANNEL, "ts": message.ts}
    assert "already posted" in outcome.detail
    assert len(slack.calls_to(POST)) == 1
    [look] = slack.calls_to(HISTORY)
    assert look.payload["channel"] == CHANNEL and look.payload["include_all_metadata"] == "1"
    queued = attempt(2).queued_at
    assert queued is not None
    assert float(look.payload["oldest"]) <= (queued - slack_module.CLOCK_MARGIN).timestamp() + 1


def test_a_repeat_when_the_first_post_never_reached_slack_posts_once(slack: FakeSlack) -> None:
    notifier(slack).send(attempt(1, "other"))  # another delivery's message is no match

    outcome = notifier(slack).send(attempt(2))

    assert outcome.ok and "posted" in outcome.detail
    assert slack.deliveries() == ["other", "k1"]
    assert len(slack.calls_to(HISTORY)) == 1


def test_a_repeated_threaded_resolution_is_not_posted_again(slack: FakeSlack) -> None:
    thread = notifier(slack).send(attempt(1, "k1")).thread
    resolved = {"thread": thread, "alerts": [alert(status="resolved")], "status": "resolved"}
    notifier(slack).send(attempt(1, "k2", **resolved))  # replied, died before recording

    outcome = notifier(slack).send(attempt(2, "k2", **resolved))

    assert outcome.ok and outcome.thread == thread and "already replied" in outcome.detail
    [parent] = slack.top_level()
    assert len(slack.replies(parent.ts)) == 1
    assert parent.edits == 2, "the parent is brought up to date again (the first may not have)"
    [look] = slack.calls_to(REPLIES)
    assert look.payload["ts"] == parent.ts and look.payload["include_all_metadata"] == "1"
    assert slack.calls_to(HISTORY) == []


def test_the_earlier_post_is_found_a_few_pages_back(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_module, "HISTORY_LIMIT", 2)
    sender = notifier(slack)
    for key in ("k1", "a", "b", "c", "d"):
        sender.send(attempt(1, key))

    outcome = notifier(slack).send(attempt(2))

    assert outcome.ok and len(slack.messages) == 5
    cursors = [c.payload.get("cursor") for c in slack.calls_to(HISTORY)]
    assert cursors == [None, "2", "4"]


def test_missing_history_scope_posts_anyway_and_warns_once(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.history_error = "missing_scope"
    sender = notifier(slack)
    with caplog.at_level(logging.INFO, logger=slack_module.__name__):
        outcomes = [sender.send(attempt(2, key)) for key in ("k1", "k2", "k3")]

    assert all(o.ok for o in outcomes) and slack.deliveries() == ["k1", "k2", "k3"]
    [warning] = warnings(caplog)
    assert "'oncall'" in warning and "missing_scope" in warning
    assert "channels:history" in warning and "groups:history" in warning


def test_not_in_channel_posts_anyway(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    slack.fail_next(1, status=200, error="not_in_channel", method=HISTORY)
    with caplog.at_level(logging.WARNING, logger=slack_module.__name__):
        outcome = notifier(slack).send(attempt(2))
    assert outcome.ok and slack.deliveries() == ["k1"]
    assert len(warnings(caplog)) == 1


def test_a_transient_history_failure_posts_without_a_warning(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next(1, status=503, method=HISTORY)
    with caplog.at_level(logging.INFO, logger=slack_module.__name__):
        outcome = notifier(slack).send(attempt(2))
    assert outcome.ok and slack.deliveries() == ["k1"]
    assert warnings(caplog) == [] and "may appear twice" in caplog.text


def test_a_channel_given_by_name_is_looked_up_once_its_id_is_known(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    sender = notifier(slack, "#alerts")
    with caplog.at_level(logging.WARNING, logger=slack_module.__name__):
        assert sender.send(attempt(2, "k1")).ok  # no ID yet: history takes IDs only
        assert slack.calls_to(HISTORY) == []
        assert sender.send(attempt(2, "k1")).ok  # the post told it the channel's ID
    [look] = slack.calls_to(HISTORY)
    assert look.payload["channel"] == CHANNEL and slack.deliveries() == ["k1"]
    [warning] = warnings(caplog)
    assert "'#alerts' is a name" in warning


def test_a_repeat_after_slack_refused_every_attempt_here_does_not_look(slack: FakeSlack) -> None:
    sender = notifier(slack)
    slack.fail_next(2, status=429, retry_after=0, method=POST)
    assert not sender.send(attempt(1)).ok
    assert not sender.send(attempt(2)).ok
    assert sender.send(attempt(3)).ok
    assert slack.calls_to(HISTORY) == [] and slack.deliveries() == ["k1"]


def test_a_repeat_after_an_uncertain_failure_looks(slack: FakeSlack) -> None:
    sender = notifier(slack)
    slack.fail_next(1, status=500, method=POST)  # a 5xx may come after the post was made
    assert not sender.send(attempt(1)).ok
    assert sender.send(attempt(2)).ok
    assert len(slack.calls_to(HISTORY)) == 1 and slack.deliveries() == ["k1"]


def test_without_a_delivery_key_nothing_is_looked_up(slack: FakeSlack) -> None:
    outcome = notifier(slack).send(notification(attempt=2))
    assert outcome.ok and slack.calls_to(HISTORY) == []
    assert slack.messages[0].metadata is None


def test_the_demo_sink_answers_the_history_methods_too() -> None:
    with SlackSink(token=TOKEN) as sink:

        def fresh() -> SlackNotifier:
            return SlackNotifier(TOKEN, "C0DEMOCHAN", base_url=sink.base_url)

        thread = fresh().send(attempt(1, "k1")).thread
        assert fresh().send(attempt(2, "k1")).thread == thread
        reply = {"thread": thread, "alerts": [alert(status="resolved")], "status": "resolved"}
        fresh().send(attempt(1, "k2", **reply))
        assert "already replied" in fresh().send(attempt(2, "k2", **reply)).detail
        assert len(sink.top_level()) == 1 and len(sink.replies(str(thread["ts"]))) == 1
        assert sink.messages[0].metadata == {
            "event_type": METADATA_EVENT,
            "event_payload": {"delivery": "k1"},
        }


# -- through the outbox: a worker killed between Slack's answer and the record ----------


def _service(store: Store, results: Results, slack: FakeSlack, clock: Clock) -> AlertingService:
    receiver = {"token": TOKEN, "channel": CHANNEL, "base_url": slack.base_url}
    config = Config.model_validate(
        {
            "receivers": [{"name": "oncall", "slack": receiver}],
            "route": {
                "receiver": "oncall",
                "group_by": ["model"],
                "group_wait": "0s",
                "group_interval": "1m",
            },
            "policies": [
                {"name": "feature-drift", "condition": {"status": {"metric": "ks", "column": "*"}}},
            ],
        }
    )
    retry = RetryPolicy(initial_s=0.0, jitter=0.0)
    return AlertingService(store, results.registry, config, "test", retry=retry, clock=clock)


def _expire_claims(store: Store) -> None:
    d, past = t.deliveries, datetime.now(UTC) - timedelta(hours=1)
    with store.write() as conn:
        conn.execute(update(d).where(d.c.status == "sending").values(claimed_at=past))


def test_a_worker_killed_after_slack_answered_posts_each_notification_once(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()
    results.window(0, [drift("age", 0.41, True)])
    _send_and_die(store, _service(store, results, slack, clock))

    restarted = _service(store, results, slack, clock)
    restarted.cycle()

    [top] = slack.top_level()
    assert len(slack.calls_to(POST)) == 1
    assert _statuses(store) == {"delivered": 1}
    [recorded] = restarted.outbox.attempts(1)  # the killed attempt left no record
    assert recorded["attempt"] == 2 and "already posted" in recorded["detail"]
    results.window(1, [drift("age", 0.01, False)])
    clock.advance(minutes=2)
    _send_and_die(store, _service(store, results, slack, clock))  # the resolution

    restarted = _service(store, results, slack, clock)
    restarted.cycle()

    assert "already replied" in restarted.outbox.attempts(2)[-1]["detail"]
    [reply] = slack.replies(top.ts)  # the thread found by the repeat was kept for it
    assert "resolved" in reply.text.lower() and len(slack.calls_to(POST)) == 2
    assert _statuses(store) == {"delivered": 2}
    assert len(slack.calls_to(HISTORY)) == 1 and len(slack.calls_to(REPLIES)) == 1


def test_a_worker_killed_before_slack_got_the_post_posts_it_once(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()
    results.window(0, [drift("age", 0.41, True)])
    service = _service(store, results, slack, clock)
    service.engine.evaluate()
    service.dispatcher.flush(clock())
    assert service.outbox.claim("killed-worker") is not None  # died before sending
    _expire_claims(store)

    _service(store, results, slack, clock).cycle()

    assert len(slack.calls_to(POST)) == 1 and len(slack.calls_to(HISTORY)) == 1
    assert len(slack.top_level()) == 1 and _statuses(store) == {"delivered": 1}


def _send_and_die(store: Store, service: AlertingService) -> None:
    """Claim the due notification and send it, then die: no record; the lease runs out."""
    service.engine.evaluate()
    assert service.dispatcher.flush(service.clock() if service.clock else None) == 1
    delivery = service.outbox.claim("killed-worker")
    assert delivery is not None and delivery.attempts == 1
    assert service.handler(delivery).ok  # Slack has it; the outbox never hears
    _expire_claims(store)


def _statuses(store: Store) -> dict[str, int]:
    with store.read() as conn:
        rows = conn.exec_driver_sql("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        return {str(s): int(n) for s, n in rows}
