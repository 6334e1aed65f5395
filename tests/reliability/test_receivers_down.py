"""Receivers down for ten minutes, then back: everything delivered soon after, once.

Slack answers 429 with ``Retry-After`` and the webhook receiver 503, then it
refuses connections, for ten minutes of a simulated clock (the outbox's and the
dispatcher's), while windows keep being evaluated and alerting cycles keep
running, each quickly. After recovery every notification arrives within about a
minute (the backoff is capped at one), none expired, each webhook-id once and
each Slack notification one message.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import HEADER_ID, WebhookNotifier
from alerts.service import AlertingService
from modelwatch import outbox as outbox_module
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store.engine import Store
from tests.alerts.fake_slack import FakeSlack
from tests.alerts.helpers import Results, accuracy
from tests.alerts.receivers import Reply, WebhookReceiver

pytestmark = pytest.mark.reliability

OUTAGE = timedelta(minutes=10)
STEP = timedelta(seconds=10)  # one alerting cycle of the simulated clock
POLICIES = 4


class SimulatedClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedClock]:
    sim = SimulatedClock()
    monkeypatch.setattr(outbox_module, "utcnow", sim)
    yield sim


def _config(hook: str, slack: str) -> Config:
    return Config.model_validate(
        {
            "receivers": [
                {"name": "hook", "webhook": {"url": hook}},
                {"name": "slack", "slack": {"token": "xoxb-test-token", "channel": "#alerts"}},
            ],
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1h",
                "repeat_interval": "4h",
                "routes": [{"receiver": "slack", "continue": True}, {"receiver": "hook"}],
            },
            "policies": [
                {
                    "name": f"accuracy-below-{bound}",
                    "model": "churn",
                    "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": bound}},
                }
                for bound in (0.9, 0.8, 0.7, 0.6)[:POLICIES]
            ],
        }
    )


def test_a_ten_minute_outage_delays_but_never_loses_or_repeats(
    store: Store, clock: SimulatedClock
) -> None:
    results = Results(store)
    down = Reply(503, {"Retry-After": "20"})
    with WebhookReceiver(default=down) as hook, FakeSlack() as slack:
        slack.fail_next(10_000, status=429, retry_after=30)
        notifiers = {
            "hook": WebhookNotifier(hook.url, timeout=2),
            "slack": SlackNotifier("xoxb-test-token", "#alerts", base_url=slack.base_url),
        }
        service = AlertingService(
            store,
            results.registry,
            _config(hook.url, slack.base_url),
            "test",
            notifiers=notifiers,
            retry=RetryPolicy(),
            clock=clock,
        )
        hook_url = hook.url
        outage_end = clock.now + OUTAGE
        window, cycles = 0, []
        while clock.now < outage_end:
            if clock.now > outage_end - OUTAGE / 2 and hook.port:
                hook.stop()  # the second half: connections refused
                hook.port = 0
            results.window(window, [accuracy(0.5)])  # evaluation goes on
            window += 1
            started = time.monotonic()
            service.cycle()
            cycles.append(time.monotonic() - started)
            clock.now += STEP
        counts = service.outbox.counts()
        assert counts == {"pending": 2 * POLICIES}, counts  # none expired, none delivered
        assert max(cycles) < 5, f"an alerting cycle took {max(cycles):.1f}s during the outage"
        with WebhookReceiver() as back:
            slack.recover()
            notifiers["hook"] = WebhookNotifier(back.url)
            service.handler.notifiers = notifiers
            recovered = clock.now
            while service.outbox.counts() != {"delivered": 2 * POLICIES}:
                assert clock.now - recovered < timedelta(minutes=2), service.outbox.counts()
                service.cycle()
                clock.now += STEP
            waited = clock.now - recovered
            ids = Counter(r.headers.get(HEADER_ID) for r in back.requests)
    assert hook_url
    assert len(ids) == POLICIES and set(ids.values()) == {1}
    assert len(slack.top_level()) == POLICIES
    with store.read() as conn:
        attempts = conn.exec_driver_sql("SELECT COUNT(*) FROM delivery_attempts").scalar()
    print(
        f"delivered {waited.total_seconds():.0f}s (simulated) after recovery; {attempts} attempts"
    )


@pytest.mark.parametrize("outage_s", [600.0, 3600.0])
def test_the_backoff_after_a_long_outage_is_at_most_a_minute(outage_s: float) -> None:
    retry = RetryPolicy()
    waited, attempts = 0.0, 0
    while waited < outage_s:
        attempts += 1
        waited += retry.delay(attempts, None)
    # The first attempt after recovery comes at most one (jittered) maximum delay later.
    assert retry.delay(attempts + 1, None) <= 60 * 1.2
    assert retry.max_s == 60.0
