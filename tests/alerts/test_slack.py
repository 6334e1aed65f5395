"""The Slack notifier against a local Slack Web API (slack-sdk's base_url pointed at it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient

from alerts.notifiers.base import Alert, DeliveryOutcome, Notification
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.templates import build_blocks, sparkline
from tests.alerts.fake_slack import FakeSlack

TOKEN = "xoxb-test-token"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GROUP = {"alertname": "drift_high", "model": "fraud", "version": "7", "severity": "critical"}


def alert(column: str = "amount", *, status: str = "firing", **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "fingerprint": f"fp-{column}",
        "status": status,
        "labels": {**GROUP, "metric": "psi", "column": column},
        "annotations": {
            "summary": f"PSI of {column} above 0.2",
            "description": f"The distribution of {column} moved away from the reference.",
            "report_url": f"http://mw.local/reports/{column}",
        },
        "starts_at": START,
        "ends_at": datetime(2025, 3, 1, 15, 0, tzinfo=UTC) if status == "resolved" else None,
        "value": 0.31,
        "threshold": 0.2,
        "trend": [0.05, 0.08, 0.12, 0.2, 0.26, 0.31],
        "generator_url": "http://mw.local/models/fraud/versions/7",
    }
    fields.update(changes)
    return Alert(**fields)


def notification(
    *alerts: Alert, thread: dict[str, Any] | None = None, **changes: Any
) -> Notification:
    alerts = alerts or (alert(),)
    fields: dict[str, Any] = {
        "receiver": "oncall",
        "group_key": "drift_high/fraud",
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "group_labels": {"alertname": "drift_high", "model": "fraud"},
        "common_labels": {**GROUP, "metric": "psi"},
        "common_annotations": {"dashboard_url": "http://grafana.local/d/fraud"},
        "alerts": list(alerts),
        "external_url": "http://mw.local",
        "thread": thread or {},
    }
    fields.update(changes)
    return Notification(**fields)


def text_of(blocks: list[dict[str, Any]]) -> str:
    """Every text in the blocks, concatenated, for content assertions."""
    parts: list[str] = []
    for block in blocks:
        for item in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(item, dict):
                parts.append(str(item.get("text", "")))
    return "\n".join(parts)


def header_of(blocks: list[dict[str, Any]]) -> str:
    return str(blocks[0]["text"]["text"])


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, channels={"alerts": "C0ALERTS"}) as server:
        yield server


@pytest.fixture
def notifier(slack: FakeSlack) -> SlackNotifier:
    return SlackNotifier(TOKEN, "#alerts", base_url=slack.base_url, timeout=2)


def first_post(notifier: SlackNotifier) -> DeliveryOutcome:
    outcome = notifier.send(notification())
    assert outcome.ok, outcome.detail
    return outcome


# -- message flow -------------------------------------------------------------------------


def test_first_notification_posts_a_block_kit_message(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    outcome = notifier.send(notification())

    assert outcome.ok and outcome.status_code == 200 and not outcome.permanent
    [message] = slack.messages
    assert outcome.thread == {"channel": "C0ALERTS", "ts": message.ts}
    assert message.thread_ts is None and message.channel == "C0ALERTS"
    assert message.text.startswith("🔥 FIRING (1) · drift_high · fraud v7")
    assert header_of(message.blocks) == "🔥 FIRING (1) · drift_high · fraud v7"
    text = text_of(message.blocks)
    for expected in (
        "*Model*\nfraud",
        "*Version*\n7",
        "*Policy*\ndrift_high",
        "*Severity*\ncritical",
        "🔴 *fraud v7*: psi `0.31`, above `0.2`, rising",  # what changed, in plain words
        "_PSI of amount above 0.2_",  # the policy's own words
        "column=`amount`",  # which one, of the group
        "`▁▂▃▅▇█` 0.2 → 0.26 → 0.31",  # trend
        "<http://mw.local/models/fraud/versions/7|Source>",
        "<http://mw.local/reports/amount|Report>",
        "<http://grafana.local/d/fraud|Dashboard>",
        "<http://mw.local|modelwatch>",
        "Since 2025-03-01 12:00 UTC",
    ):
        assert expected in text


def test_updates_go_to_the_thread_and_refresh_the_parent(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    thread = first_post(notifier).thread

    outcome = notifier.send(notification(alert("amount"), alert("age"), thread=thread))

    assert outcome.ok and outcome.thread == thread
    assert "parent message updated" in outcome.detail
    [parent] = slack.top_level()
    [reply] = slack.replies(parent.ts)
    assert reply.channel == "C0ALERTS" and "column=`age`" in text_of(reply.blocks)
    assert header_of(parent.blocks) == "🔥 FIRING (2) · drift_high · fraud v7"
    assert parent.edits == 1 and slack.updates[0].ts == parent.ts


def test_resolution_is_posted_in_the_thread_and_marks_the_parent(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    thread = first_post(notifier).thread

    outcome = notifier.send(notification(alert(status="resolved"), thread=thread))

    assert outcome.ok
    [parent] = slack.top_level()
    [reply] = slack.replies(parent.ts)
    for message in (parent, reply):
        assert header_of(message.blocks) == "✅ RESOLVED · drift_high · fraud v7"
        assert message.text.startswith("✅ RESOLVED")
    assert "Resolved 2025-03-01 15:00 UTC" in text_of(reply.blocks)
    assert "✅ *fraud v7* resolved: psi `0.31` (threshold `0.2`)" in text_of(reply.blocks)
    assert "PSI of amount above 0.2" not in text_of(reply.blocks), "the summary is stale"


def test_a_failed_parent_update_still_delivers(slack: FakeSlack, notifier: SlackNotifier) -> None:
    thread = first_post(notifier).thread
    slack.fail_next(1, status=500, method="chat.update")

    outcome = notifier.send(notification(thread=thread))

    assert outcome.ok and "parent message not updated" in outcome.detail
    assert "internal_error" in outcome.detail
    assert len(slack.replies(thread["ts"])) == 1 and slack.updates == []


def test_a_failed_reply_fails_and_skips_the_update(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    thread = first_post(notifier).thread
    slack.fail_next(1, status=429, retry_after=3)

    outcome = notifier.send(notification(thread=thread))

    assert not outcome.ok and outcome.retry_after == 3
    assert slack.calls_to("chat.update") == []


def test_many_alerts_are_capped_and_counted() -> None:
    alerts = [alert(f"f{i}") for i in range(13)]
    blocks = build_blocks(notification(*alerts, truncated_alerts=2))
    assert header_of(blocks) == "🔥 FIRING (13+) · drift_high · fraud v7"
    assert sum("PSI of f" in str(b.get("text", "")) for b in blocks) == 10
    assert "…and 5 more alerts not shown" in text_of(blocks)
    assert len(blocks) <= 50


def test_user_text_is_escaped_for_mrkdwn() -> None:
    evil = alert(annotations={"summary": "a <b> & <!channel>"})
    text = text_of(build_blocks(notification(evil)))
    assert "a &lt;b&gt; &amp; &lt;!channel&gt;" in text and "<!channel>" not in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], "▁▂▃▄▅▆▇█"),
        ([3.0, 3.0, 3.0], "▄▄▄"),
        ([0.0, float("nan"), 1.0], "▁█"),
        ([], ""),
    ],
)
def test_sparkline(values: list[float], expected: str) -> None:
    assert sparkline(values) == expected


# -- failures -----------------------------------------------------------------------------


def test_rate_limit_reports_retry_after(slack: FakeSlack, notifier: SlackNotifier) -> None:
    slack.fail_next(1, status=429, retry_after=7)

    outcome = notifier.send(notification())

    assert (outcome.ok, outcome.permanent, outcome.retry_after) == (False, False, 7.0)
    assert outcome.status_code == 429 and "ratelimited" in outcome.detail
    assert len(slack.calls) == 1  # slack-sdk's own retries are off: the worker owns them


@pytest.mark.parametrize(
    ("status", "body"), [(500, None), (502, "<html>Bad Gateway</html>"), (503, None)]
)
def test_server_errors_are_retried(
    slack: FakeSlack, notifier: SlackNotifier, status: int, body: str | None
) -> None:
    slack.fail_next(1, status=status, body=body)

    outcome = notifier.send(notification())

    assert not outcome.ok and not outcome.permanent and outcome.retry_after is None
    assert outcome.status_code == status and len(slack.calls) == 1


def test_invalid_token_is_permanent(slack: FakeSlack) -> None:
    notifier = SlackNotifier("xoxb-wrong", "#alerts", base_url=slack.base_url)
    outcome = notifier.send(notification())
    assert not outcome.ok and outcome.permanent and "invalid_auth" in outcome.detail


def test_unknown_channel_is_permanent(slack: FakeSlack) -> None:
    notifier = SlackNotifier(TOKEN, "#nowhere", base_url=slack.base_url)
    outcome = notifier.send(notification())
    assert not outcome.ok and outcome.permanent and "channel_not_found" in outcome.detail


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        ("not_in_channel", True),
        ("is_archived", True),
        ("msg_too_long", True),
        ("invalid_blocks", True),
        ("token_revoked", True),
        ("account_inactive", True),
        ("not_authed", True),
        ("internal_error", False),
        ("fatal_error", False),
        ("something_new", False),  # unknown codes are retried, bounded by the worker
    ],
)
def test_slack_error_codes(
    slack: FakeSlack, notifier: SlackNotifier, error: str, permanent: bool
) -> None:
    slack.fail_next(1, status=200, error=error)
    outcome = notifier.send(notification())
    assert not outcome.ok and outcome.permanent is permanent and error in outcome.detail


def test_recovery_after_an_outage(slack: FakeSlack, notifier: SlackNotifier) -> None:
    slack.fail_next(2, status=503)
    slack.fail_next(1, status=429, retry_after=1)

    outcomes = [notifier.send(notification()) for _ in range(4)]

    assert [o.ok for o in outcomes] == [False, False, False, True]
    assert [o.status_code for o in outcomes] == [503, 503, 429, 200]
    assert len(slack.top_level()) == 1  # failed attempts posted nothing
    follow_up = notifier.send(notification(alert(status="resolved"), thread=outcomes[-1].thread))
    assert follow_up.ok and slack.updates


def test_connection_refused_is_retried() -> None:
    server = FakeSlack()
    base_url = server.base_url
    server.stop()  # never started: the port is closed
    outcome = SlackNotifier(TOKEN, "#alerts", base_url=base_url).send(notification())
    assert not outcome.ok and not outcome.permanent and "connection error" in outcome.detail


def test_timeout_is_retried(slack: FakeSlack) -> None:
    slack.delay = 0.3
    notifier = SlackNotifier(TOKEN, "#alerts", base_url=slack.base_url, timeout=0.05)
    outcome = notifier.send(notification())
    assert not outcome.ok and not outcome.permanent and "timed out" in outcome.detail


def test_unexpected_errors_are_reported_not_raised() -> None:
    class Broken(WebClient):
        def chat_postMessage(self, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    outcome = SlackNotifier(TOKEN, "#alerts", client=Broken()).send(notification())
    assert not outcome.ok and outcome.permanent and "RuntimeError: boom" in outcome.detail


# -- the fake server itself ---------------------------------------------------------------


def test_fake_slack_accepts_form_bodies_with_a_token_field(slack: FakeSlack) -> None:
    form = {"token": TOKEN, "channel": "alerts", "text": "hi", "blocks": "[]"}
    reply = httpx.post(f"{slack.base_url}chat.postMessage", data=form).json()
    assert reply["ok"] and reply["channel"] == "C0ALERTS"
    assert slack.message(reply["ts"]).text == "hi"
    update = {"token": TOKEN, "channel": "alerts", "ts": reply["ts"], "text": "x"}
    assert httpx.post(f"{slack.base_url}chat.update", data=update).json() == {
        "ok": False,
        "error": "channel_not_found",  # chat.update takes channel ids only
    }


# -- lines a person can act on ----------------------------------------------------------


def _lines(blocks: list[dict[str, Any]]) -> list[str]:
    sections = [b for b in blocks if b["type"] == "section" and "text" in b]
    return [str(b["text"]["text"]).splitlines()[0] for b in sections]


def test_lines_go_champion_first_and_the_header_names_what_fires() -> None:
    def accuracy(version: str, alias: str, status: str, value: float) -> Alert:
        labels = {"alertname": f"acc-{alias}", "model": "fraud", "version": version}
        annotations = {"metric": "accuracy", "alias": alias, "alias_now": alias}
        if status == "resolved":
            annotations["resolution"] = "recovered"
        return alert(
            version,
            status=status,
            labels=labels,
            annotations=annotations,
            value=value,
            threshold=0.8,
            trend=[0.9, 0.85, value],
        )

    n = notification(
        accuracy("v2", "challenger", "firing", 0.7),
        accuracy("v1", "champion", "firing", 0.75),
        accuracy("v3", "shadow", "resolved", 0.85),
        group_labels={"model": "fraud"},
        common_labels={"model": "fraud"},
    )
    blocks = build_blocks(n)
    assert header_of(blocks) == "🔥 FIRING (2) · acc-challenger, acc-champion · fraud"
    assert _lines(blocks) == [
        "🔥 *fraud v1 (champion)*: accuracy `0.75`, below `0.8`, falling",
        "✅ *fraud v3 (shadow)* recovered: accuracy `0.85`, back above `0.8`",
        "🔥 *fraud v2 (challenger)*: accuracy `0.7`, below `0.8`, falling",
    ]


def test_policies_saying_the_same_of_one_stream_make_one_line() -> None:
    def share(policy: str, versions: str) -> Alert:
        labels = {"alertname": policy, "model": "fraud", "stream": "served", "versions": versions}
        annotations = {"metric": "data_drift", "summary": f"{policy} says so"}
        return alert(policy, labels=labels, annotations=annotations, value=0.5, threshold=0.4)

    n = notification(
        share("drift-retrain", "v1"),
        share("feature-drift", "v1,v2"),
        group_labels={"model": "fraud"},
        common_labels={"model": "fraud", "stream": "served"},
    )
    blocks = build_blocks(n)
    assert header_of(blocks) == "🔥 FIRING (1) · drift-retrain, feature-drift · fraud"
    [line] = _lines(blocks)
    assert line.startswith(
        "🔥 *fraud served traffic (v1, v2)*: share of features drifted `0.5`, above `0.4`"
    )
    text = text_of(blocks)
    assert "_feature-drift says so_" in text and "_drift-retrain says so_" in text
