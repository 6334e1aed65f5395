"""Input drift belongs to the traffic: versions scoring the same requests share one alert;
prediction and performance figures stay per version. And why an alert resolved, as the
engine records it and Slack shows it. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from alerts import reasons
from alerts.service import AlertingService
from modelwatch.domain import Alias
from modelwatch.policies import Matcher
from modelwatch.results import MetricResult
from modelwatch.store.alerts import FIRING, RESOLVED, fingerprint
from modelwatch.store.engine import Store
from tests.alerts.fake_slack import FakeSlack, SlackMessage
from tests.alerts.helpers import Results, accuracy, drift, slack_service
from tests.alerts.test_alerting import Clock

INPUT_DRIFT = {"name": "input-drift", "condition": {"status": {"metric": "ks", "column": "*"}}}
PREDICTION_DRIFT = {
    "name": "prediction-drift",
    "condition": {"status": {"metric": "ks", "column": "prediction"}},
}
CHAMPION_ACCURACY = {
    "name": "champion-accuracy",
    "aliases": ["champion"],
    "severity": "critical",
    "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token="xoxb-test", channels={"ml-oncall": "C0ONCALL"}) as server:
        yield server


def _service(
    store: Store, results: Results, slack: FakeSlack, clock: Clock, *policies: dict[str, Any]
) -> AlertingService:
    service: AlertingService = slack_service(
        store,
        results,
        slack.base_url,
        list(policies),
        clock=clock,
        route={"group_interval": "1m"},
        inhibit_rules=[],
    )
    return service


def _with_shadow(store: Store) -> Results:
    results = Results(store)
    churn = results.registry.get_model("churn")
    results.registry.create_version(churn, "v3", Alias.SHADOW, "t")
    return results


def _sections(message: SlackMessage) -> list[str]:
    return [
        str(b["text"]["text"]) for b in message.blocks if b["type"] == "section" and "text" in b
    ]


def _firing(service: AlertingService) -> list[dict[str, str]]:
    return [a.labels for a in service.alerts.all([FIRING])]


def test_a_champion_and_its_shadow_share_one_input_drift_alert(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = _with_shadow(store), Clock()
    service = _service(store, results, slack, clock, INPUT_DRIFT)
    for version in ("v1", "v3"):  # the same requests, so the same drifted inputs
        results.window(0, [drift("age", 0.41, True)], version=version)
    service.cycle()

    [labels] = _firing(service)
    assert labels["stream"] == "served" and labels["versions"] == "v1,v3"
    assert "version" not in labels and labels["feature"] == "age"
    [message] = slack.top_level()
    [line] = _sections(message)
    assert line.startswith("🟠 *churn served traffic (v1, v3)*: ks `0.41`\n")
    assert message.blocks[0]["text"]["text"] == "🔥 FIRING (1) · input-drift · churn"


def test_a_split_challenger_is_its_own_stream_unless_it_scores_the_same_requests(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()  # v1 champion, v2 challenger
    service = _service(store, results, slack, clock, INPUT_DRIFT)
    for version in ("v1", "v2"):
        results.window(0, [drift("age", 0.41, True)], version=version)
    service.cycle()
    assert sorted(a["stream"] for a in _firing(service)) == ["served", "v2"]

    shadowed = MetricResult("champion_challenger", 0.01, 200, label="accuracy", detail="shadow")
    for version in ("v1", "v2"):
        extra = [shadowed] if version == "v2" else []
        results.window(1, [drift("age", 0.45, True), *extra], version=version)
    service.cycle()
    [labels] = _firing(service)
    assert labels["stream"] == "served" and labels["versions"] == "v1,v2"


def test_the_stream_alert_keeps_its_identity_as_versions_join(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = _with_shadow(store), Clock()
    service = _service(store, results, slack, clock, INPUT_DRIFT)
    results.window(0, [drift("age", 0.41, True)], version="v1")
    service.cycle()
    [before] = service.alerts.all([FIRING])
    results.window(1, [drift("age", 0.42, True)], version="v3")
    service.cycle()
    [after] = service.alerts.all([FIRING])
    assert after.id == before.id and after.labels["versions"] == "v1,v3"
    identity = {k: v for k, v in after.labels.items() if k != "versions"}
    assert after.fingerprint == fingerprint(identity)


def test_prediction_drift_stays_per_version(store: Store, slack: FakeSlack) -> None:
    results, clock = _with_shadow(store), Clock()
    service = _service(store, results, slack, clock, PREDICTION_DRIFT)
    for version in ("v1", "v3"):
        results.window(0, [drift("prediction", 0.3, True)], version=version)
    service.cycle()
    firing = _firing(service)
    assert sorted(a["version"] for a in firing) == ["v1", "v3"]
    assert not any("stream" in a for a in firing)
    assert firing[0] == {
        "alertname": "prediction-drift",
        "model": "churn",
        "version": firing[0]["version"],
        "severity": "warning",
    }, "per-version labels (and so fingerprints) are as before"


def test_a_promotion_ends_the_old_champions_alert_without_a_tick(
    store: Store, slack: FakeSlack
) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock, CHAMPION_ACCURACY)
    results.window(0, [accuracy(0.6972)])
    service.cycle()
    churn = results.registry.get_model("churn")
    results.registry.set_alias(churn, Alias.CHAMPION, "v2", "t")
    clock.advance(minutes=2)
    service.cycle()

    [alert] = service.alerts.all([RESOLVED])
    assert alert.annotations[reasons.RESOLUTION] == reasons.ALIAS_CHANGED
    causes = [tr["cause"] for tr in service.alerts.transitions(alert.id)]
    assert causes[-1] == "no longer evaluated: churn v1 is no longer champion"
    [parent] = slack.top_level()
    [reply] = slack.replies(parent.ts)
    [line] = _sections(reply)
    first = line.splitlines()[0]
    assert first == (
        "↩ *churn v1 (now retired from champion)*: accuracy `0.6972`, still below `0.8` — "
        "no longer evaluated as champion"
    )
    assert "✅" not in json.dumps(reply.blocks, ensure_ascii=False)
    assert reply.blocks[0]["text"]["text"] == "↩ RESOLVED · champion-accuracy · churn v1"


def test_a_recovery_says_so_and_a_removed_policy_says_so(store: Store, slack: FakeSlack) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock, CHAMPION_ACCURACY, INPUT_DRIFT)
    results.window(0, [accuracy(0.7), drift("age", 0.41, True)])
    service.cycle()
    [parent] = slack.top_level()
    assert parent.blocks[0]["text"]["text"] == (
        "🔥 FIRING (2) · champion-accuracy, input-drift · churn"
    )
    first = [s.splitlines()[0] for s in _sections(parent)]
    assert first[0].startswith("🔴 *churn v1 (champion)*: accuracy `0.7`, below `0.8`")

    results.window(1, [accuracy(0.9), drift("age", 0.5, True)])
    clock.advance(minutes=2)
    service.cycle()
    [reply] = slack.replies(parent.ts)
    assert reply.blocks[0]["text"]["text"] == "🔥 FIRING (1) · input-drift · churn", (
        "the header names only what fires now"
    )
    lines = [s.splitlines()[0] for s in _sections(reply)]
    assert "✅ *churn v1 (champion)* recovered: accuracy `0.9`, back above `0.8`" in lines

    service.config.policies.pop()  # input-drift removed from the config
    clock.advance(minutes=2)
    service.cycle()
    [ended] = [a for a in service.alerts.all([RESOLVED]) if a.policy == "input-drift"]
    assert ended.annotations[reasons.RESOLUTION] == reasons.POLICY_REMOVED
    last = slack.replies(parent.ts)[-1]
    [line] = _sections(last)
    assert line.startswith("↩ *churn served traffic (v1)*: ks `0.5` — policy input-drift removed")


def test_a_silence_is_announced_once_as_the_reason(store: Store, slack: FakeSlack) -> None:
    results, clock = Results(store), Clock()
    service = _service(store, results, slack, clock, INPUT_DRIFT)
    results.window(0, [drift("age", 0.41, True), drift("plan", 0.3, True)])
    service.cycle()
    [parent] = slack.top_level()
    service.alerts.create_silence(
        [Matcher.parse('feature="age"')],
        clock.now - timedelta(hours=1),
        clock.now + timedelta(hours=1),
        "oncall",
        "known issue",
    )
    clock.advance(minutes=2)
    service.cycle()
    [reply] = slack.replies(parent.ts)
    assert reply.blocks[0]["text"]["text"] == "🔥 FIRING (1) · input-drift · churn"
    lines = [s.splitlines()[0] for s in _sections(reply)]
    assert any(line.startswith("🔕") and "silenced, still firing" in line for line in lines)
    clock.advance(minutes=2)
    service.cycle()
    assert len(slack.replies(parent.ts)) == 1, "a silence is announced once"
