"""The demo's alert scenario in simulated time: a drift injected into the fraud traffic
gives exactly one grouped Slack message for fraud (none for delivery-eta), and after
the drift stops a resolution in that message's thread.

The pieces run in-process with the demo's config (tests/demo_world.py): the API (for
the simulator's SDK), the local Slack sink, and the evaluation and alerting services
on a simulated clock. Simulated time starts three hours ago on the minute, so every
window is closed when its traffic has been sent; each step sends 30 simulated seconds
of traffic, then plans and drains evaluations and runs one alerting cycle "now".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.routing import routes_for
from demo.config import SLACK_CHANNEL_ENV, SLACK_TOKEN_ENV, demo_config, describe
from demo.slack_sink import SinkMessage
from tests.demo_world import DemoWorld, check_threads, demo_world

DRIFT_AT_MIN, DRIFT_MINUTES, END_MIN = 10, 3, 18


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with demo_world(tmp_path) as w:
        yield w


def _resolved(message: SinkMessage) -> bool:
    return message.header.startswith("✅ RESOLVED")


def test_a_drift_gives_one_grouped_slack_message_then_its_resolution(world: DemoWorld) -> None:
    sink = world.sink
    sim = world.simulator(DRIFT_AT_MIN, DRIFT_MINUTES)
    try:
        while world.minutes() < DRIFT_AT_MIN:
            world.step(sim)
            assert sink.messages == [], f"an alert before the drift, at {world.minutes()} min"

        while world.minutes() < DRIFT_AT_MIN + DRIFT_MINUTES:
            world.step(sim)
            assert len(sink.top_level()) <= 1
        top = sink.top_level()
        assert len(top) == 1, "the drift gives one grouped message"
        parent = top[0]
        assert "fraud" in parent.header and "FIRING" in parent.header
        assert "feature-drift" in parent.full_text()
        assert not any(_resolved(m) for m in sink.messages), "nothing resolves during the drift"
        during = len(sink.messages)

        while world.minutes() < END_MIN:
            world.step(sim)
    finally:
        sim.close()

    assert sink.top_level() == [parent], "later changes are replies in the same thread"
    replies = sink.replies(parent.ts)
    assert len(sink.messages) > during and replies
    assert _resolved(replies[-1]), [r.header for r in replies]
    assert "fraud" in replies[-1].header
    assert parent.edits >= 1 and _resolved(parent), "the parent shows the group's state"
    assert "fraud-accuracy" in "".join(m.full_text() for m in sink.messages), (
        "the champion's accuracy drop joins the same group"
    )
    assert not any("delivery-eta" in m.full_text() for m in sink.messages)
    assert any("drift injected" in line for line in world.narration)
    assert any("drift stopped" in line for line in world.narration)


def test_with_slack_configured_alerts_go_to_the_sink_and_to_slack() -> None:
    env = {SLACK_TOKEN_ENV: "xoxb-real", SLACK_CHANNEL_ENV: "#fraud-oncall"}
    config = demo_config("http://127.0.0.1:9/api/", env=env)
    routes = routes_for(config.route, {"alertname": "feature-drift", "model": "fraud"})
    assert [(r.receiver, r.group_by, r.group_wait) for r in routes] == [
        ("demo-slack", ("model",), 10),
        ("slack", ("model",), 10),
    ]
    slack = {r.name: r.slack for r in config.receivers}
    assert slack["slack"] is not None and slack["slack"].base_url == "https://slack.com/api/"
    assert slack["slack"].token == "xoxb-real" and slack["slack"].channel == "#fraud-oncall"
    assert "#fraud-oncall (Slack)" in describe(config)[-1]
    alone = demo_config("http://127.0.0.1:9/api/", env={SLACK_TOKEN_ENV: "xoxb-real"})
    assert [r.name for r in alone.receivers] == ["demo-slack"], "a token without a channel"


def test_the_thread_says_each_drift_once_and_counts_what_fires(world: DemoWorld) -> None:
    sim = world.simulator(DRIFT_AT_MIN, DRIFT_MINUTES)
    try:
        while world.minutes() < END_MIN:
            world.step(sim)
    finally:
        sim.close()
    said = check_threads(world.sink, "served traffic (v1, v2)")
    assert "share of features drifted" in said, said
