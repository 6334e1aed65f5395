"""The webhook notifier: Alertmanager v4 payload, status mapping, Retry-After."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from alerts.notifiers.base import Alert, Notification
from alerts.notifiers.webhook import WebhookNotifier, alertmanager_payload
from modelwatch.timeutil import parse_retry_after
from tests.alerts.receivers import Reply, WebhookReceiver

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def notification(**changes: object) -> Notification:
    firing = Alert(
        fingerprint="a1b2c3",
        status="firing",
        labels={"alertname": "drift_high", "model": "fraud", "column": "amount"},
        annotations={"summary": "PSI of amount above 0.2"},
        starts_at=START,
        value=0.31,
        threshold=0.2,
        trend=[0.1, 0.2, 0.31],
        generator_url="http://mw.local/models/fraud",
    )
    resolved = Alert(
        fingerprint="d4e5f6",
        status="resolved",
        labels={"alertname": "drift_high", "model": "fraud", "column": "age"},
        annotations={},
        starts_at=datetime(2025, 3, 1, 13, 30, tzinfo=timezone(timedelta(hours=2))),
        ends_at=datetime(2025, 3, 1, 12, 45, 30, 250000),  # naive: UTC
    )
    fields: dict[str, object] = {
        "receiver": "pager",
        "group_key": '{}:{alertname="drift_high", model="fraud"}',
        "status": "firing",
        "group_labels": {"alertname": "drift_high", "model": "fraud"},
        "common_labels": {"alertname": "drift_high", "model": "fraud"},
        "common_annotations": {},
        "alerts": [firing, resolved],
        "external_url": "http://mw.local",
    }
    fields.update(changes)
    return Notification(**fields)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def test_posts_the_exact_alertmanager_v4_payload(receiver: WebhookReceiver) -> None:
    notifier = WebhookNotifier(receiver.url, headers={"Authorization": "Bearer s3cret"})
    outcome = notifier.send(notification())
    notifier.close()

    assert outcome.ok and outcome.status_code == 200
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.json() == {
        "version": "4",
        "groupKey": '{}:{alertname="drift_high", model="fraud"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pager",
        "groupLabels": {"alertname": "drift_high", "model": "fraud"},
        "commonLabels": {"alertname": "drift_high", "model": "fraud"},
        "commonAnnotations": {},
        "externalURL": "http://mw.local",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "drift_high", "model": "fraud", "column": "amount"},
                "annotations": {"summary": "PSI of amount above 0.2"},
                "startsAt": "2025-03-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://mw.local/models/fraud",
                "fingerprint": "a1b2c3",
            },
            {
                "status": "resolved",
                "labels": {"alertname": "drift_high", "model": "fraud", "column": "age"},
                "annotations": {},
                "startsAt": "2025-03-01T11:30:00Z",
                "endsAt": "2025-03-01T12:45:30.250000Z",
                "generatorURL": "",
                "fingerprint": "d4e5f6",
            },
        ],
    }


def test_max_alerts_truncates_and_counts() -> None:
    payload = alertmanager_payload(notification(truncated_alerts=3), max_alerts=1)
    assert [a["fingerprint"] for a in payload["alerts"]] == ["a1b2c3"]
    assert payload["truncatedAlerts"] == 4


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status))
    outcome = WebhookNotifier(receiver.url).send(notification())
    assert outcome.ok and outcome.status_code == status and not outcome.permanent


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_5xx_are_retried(receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status, body="try later"))
    outcome = WebhookNotifier(receiver.url).send(notification())
    assert not outcome.ok and not outcome.permanent
    assert outcome.status_code == status and outcome.retry_after is None
    assert "try later" in outcome.detail


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 413, 422])
def test_other_4xx_and_redirects_are_permanent(receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status, {"Location": "http://elsewhere/"} if status < 400 else {}))
    outcome = WebhookNotifier(receiver.url).send(notification())
    assert not outcome.ok and outcome.permanent and outcome.status_code == status


def test_503_retry_after_seconds_then_recovery(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(503, {"Retry-After": "120"}), Reply(200))
    notifier = WebhookNotifier(receiver.url)
    first, second = notifier.send(notification()), notifier.send(notification())
    assert (first.ok, first.retry_after, first.permanent) == (False, 120.0, False)
    assert second.ok
    assert receiver.requests[0].body == receiver.requests[1].body


def test_429_retry_after_http_date(receiver: WebhookReceiver) -> None:
    later = datetime.now(UTC) + timedelta(seconds=90)
    receiver.script(Reply(429, {"Retry-After": format_datetime(later, usegmt=True)}))
    outcome = WebhookNotifier(receiver.url).send(notification())
    assert outcome.retry_after is not None and 85 <= outcome.retry_after <= 90


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Sat, 01 Mar 2025 12:02:00 GMT", 120.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=START) == seconds


def test_connection_refused_is_retried() -> None:
    receiver = WebhookReceiver()
    receiver.start()
    receiver.stop()
    outcome = WebhookNotifier(receiver.url).send(notification())
    assert not outcome.ok and not outcome.permanent and outcome.status_code is None
    assert "ConnectError" in outcome.detail


def test_timeout_is_retried(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(200, delay=0.3))
    outcome = WebhookNotifier(receiver.url, timeout=0.05).send(notification())
    assert not outcome.ok and not outcome.permanent and "timed out" in outcome.detail


def test_bad_url_is_permanent() -> None:
    outcome = WebhookNotifier("ftp://example.invalid/hook").send(notification())
    assert not outcome.ok and outcome.permanent


def test_transport_is_injectable_and_errors_never_raise() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    outcome = WebhookNotifier("http://x/", transport=httpx.MockTransport(explode)).send(
        notification()
    )
    assert not outcome.ok and outcome.permanent and "RuntimeError: boom" in outcome.detail

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"status": "queued"})

    assert WebhookNotifier("http://x/", transport=httpx.MockTransport(ok)).send(notification()).ok


def test_receiver_waits_for_requests_from_other_threads(receiver: WebhookReceiver) -> None:
    thread = threading.Thread(target=WebhookNotifier(receiver.url).send, args=(notification(),))
    thread.start()
    [request] = receiver.wait_for(1, timeout=5)
    thread.join()
    assert request.json()["receiver"] == "pager"
