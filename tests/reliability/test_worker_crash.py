"""Crash consistency of workers: ``modelwatch worker`` SIGKILLed mid-evaluation and
mid-delivery, restarted on the same store, until all work is done.

Evaluations are slowed (each sleeps first) and every receiver answers slowly, so
seeded kills land inside a run or between a receiver's receipt and the outbox
recording it. Leases are shortened to seconds (``MODELWATCH_RUN_LEASE_S``,
``MODELWATCH_DELIVERY_LEASE_S``) so the restarted worker takes the dead one's
claims over. No kill lands while a run is on its last attempt (a run abandoned
that often ends ``failed``, by design). Then: every (version, window, data state)
evaluated once, its results stored once (the versions are serving, so windows
without traffic up to now are planned too, and their number grows with the
test's duration); every webhook-id (alert and pipeline webhooks) seen by the
receivers, and each delivery's id the same on every attempt. A kill after the
receiver's answer repeats the delivery with the same id (at least once, with an
idempotency key). Slack takes no such key: each message carries its delivery's key
as message metadata, and a repeat looks for it in the channel's history first, so
each Slack delivery is one message however the kills land (the fake Slack posts a
message and then answers slowly, so a kill can land after it accepted the post).
Repeats and the Slack deliveries found by a repeat are counted and printed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelwatch.background import ALERTING_INTERVAL_S
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.runs import MAX_ATTEMPTS
from modelwatch.webhooks import HEADER_ID, generate_secret
from tests.alerts.fake_slack import FakeSlack
from tests.alerts.receivers import Reply, WebhookReceiver
from tests.reliability.crash_helpers import Proc, query, server, worker

pytestmark = pytest.mark.reliability

LEASE_S = 4
SLOW_EVALUATION_S = 1.5
SLOW_RECEIVER_S = 1.5
WINDOWS = 4
REQUESTS = 240
VERSIONS = ("v1", "v2")
DELIVERY_LOOPS = 2  # alerting and retraining each send one delivery at a time
EXPECTED_NOTIFICATIONS = 3  # per receiver: low-accuracy for v1 and v2, retrain-worthy for v1


def _config(hook: str, slack: str, pipeline: str) -> dict[str, Any]:
    accuracy = {"threshold": {"metric": "accuracy", "op": "<", "value": 0.9}}
    return {
        "models": [
            {
                "name": "churn",
                "task": "binary",
                "features": [{"name": "age", "type": "numeric"}],
            }
        ],
        "monitors": [
            {
                "name": "churn-minutely",
                "model": "churn",
                "window": "1m",
                "schedule": "1s",
                "label_delay": "1h",
                "backfill": "10m",
                "min_samples": 20,
                "checks": ["accuracy"],
            }
        ],
        "receivers": [
            {"name": "hook", "webhook": {"url": hook}},
            # By ID: Slack's history methods, which find an earlier attempt's post, take IDs.
            {"name": "slack", "slack": {"token": "xoxb-test-token", "channel": "C0ALERTS"}}
            | {"send_resolved": True},
        ],
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "version"],
            "group_wait": "0s",
            "group_interval": "1h",
            "repeat_interval": "1h",
            "routes": [{"receiver": "slack", "continue": True}, {"receiver": "hook"}],
        },
        "pipelines": [{"name": "trainer", "url": pipeline, "secret": generate_secret()}],
        "policies": [
            {"name": "accuracy-low", "model": "churn", "condition": accuracy},
            {
                "name": "accuracy-retrain",
                "model": "churn",
                "aliases": ["champion"],
                "condition": accuracy,
                "actions": ["notify", {"retrain": {"pipeline": "trainer", "cooldown": "6h"}}],
            },
        ],
    } | {"_slack_base_url": slack}


def _write_config(path: Path, hook: str, slack: str, pipeline: str) -> None:
    config = _config(hook, slack, pipeline)
    base_url = config.pop("_slack_base_url")
    config["receivers"][1]["slack"]["base_url"] = base_url
    path.write_text(yaml.safe_dump(config))


def _ingest(api: str) -> None:
    for version, alias in zip(VERSIONS, ("champion", "challenger"), strict=True):
        r = httpx.post(f"{api}/v1/models/churn/versions", json={"version": version, "alias": alias})
        assert r.status_code == 201, r.text
    first = (int(time.time()) // 60 - WINDOWS - 1) * 60
    events, labels = [], []
    for i in range(REQUESTS):
        stamp = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(first + (i * WINDOWS * 60) // REQUESTS)
        )
        events.append({"request_id": f"r{i}", "timestamp": stamp, "features": {"age": 1.0 * i}})
        events[-1]["prediction"] = 0
        labels.append({"request_id": f"r{i}", "label": 1, "timestamp": stamp})
    for version in VERSIONS:
        body = {"model": "churn", "version": version, "events": events}
        assert httpx.post(f"{api}/v1/predictions", json=body, timeout=60).status_code == 200
    body = {"model": "churn", "labels": labels}
    assert httpx.post(f"{api}/v1/ground-truth", json=body, timeout=60).status_code == 200


def _claims(store: Store) -> set[tuple[int, int]]:
    """(run, attempt) of every run claimed now, the dead workers' claims too."""
    sql = "SELECT id, attempts FROM evaluation_runs WHERE status = 'running'"
    return {(int(i), int(a)) for i, a in query(store, sql)}


def _on_last_attempt(store: Store) -> int:
    sql = "SELECT COUNT(*) FROM evaluation_runs WHERE status = 'running' AND attempts >= {}"
    return int(query(store, sql.format(MAX_ATTEMPTS))[0][0])


def _kill(work: Proc, store: Store) -> None:
    """SIGKILL ``work``, once no run it holds would be abandoned a last time."""
    _wait(lambda: _on_last_attempt(store) == 0, 60, "a run stayed on its last attempt", work)
    work.kill()


def _received(hook: WebhookReceiver, slack: FakeSlack, trainer: WebhookReceiver) -> int:
    return len(hook.requests) + len(slack.calls) + len(trainer.requests)


def _wait(cond: Any, timeout: float, what: str, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {timeout}s:\n{proc.tail()}"
        time.sleep(0.05)


def _settled(store: Store) -> bool:
    runs = query(
        store,
        "SELECT COUNT(*), SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) FROM evaluation_runs",
    )
    deliveries = query(store, "SELECT status, COUNT(*) FROM deliveries GROUP BY status")
    by_status = {s: int(n) for s, n in deliveries}
    total_runs, done = (int(x or 0) for x in runs[0])
    expected = 2 * EXPECTED_NOTIFICATIONS + 1
    return (
        total_runs == done >= WINDOWS * len(VERSIONS)
        and by_status.get("delivered", 0) == sum(by_status.values()) >= expected
    )


@pytest.mark.parametrize("seed", [5])
def test_worker_killed_mid_evaluation_and_mid_delivery(
    store_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    store = Store(store_url)
    upgrade(store)
    slow = Reply(200, body={"status": "ok"}, delay=SLOW_RECEIVER_S)
    with (
        WebhookReceiver(default=slow) as hook,
        WebhookReceiver(default=slow) as trainer,
        FakeSlack() as slack,
    ):
        slack.reply_delay = SLOW_RECEIVER_S  # posted, then a slow answer: kills land after
        config = tmp_path / "modelwatch.yaml"
        _write_config(config, hook.url, slack.base_url, trainer.url)
        api = server(store_url, tmp_path, "--no-scheduler", "--no-migrate", "--config", str(config))
        leases = {
            "MODELWATCH_RUN_LEASE_S": str(LEASE_S),
            "MODELWATCH_DELIVERY_LEASE_S": str(LEASE_S),
        }
        work = worker(store_url, tmp_path, config, slow_s=SLOW_EVALUATION_S, env=leases)
        try:
            api.start()
            _ingest(api.url)
            api.stop()
            for _ in range(2):  # mid-evaluation
                before = _claims(store)
                work.start()
                _wait(lambda: _claims(store) - before, 60, "no run started", work)  # noqa: B023
                time.sleep(rng.uniform(0.1, SLOW_EVALUATION_S * 0.8))
                _kill(work, store)
            delivery_kills = 0
            for _ in range(3):  # mid-delivery: the receiver has the request, no answer yet
                seen = _received(hook, slack, trainer)
                work.start()
                sent = lambda: _received(hook, slack, trainer) > seen  # noqa: B023, E731
                _wait(lambda: sent() or _settled(store), 60, "nothing sent", work)  # noqa: B023
                if not sent():
                    break  # everything was delivered before this kill
                time.sleep(rng.uniform(0.0, SLOW_RECEIVER_S * 0.5))
                _kill(work, store)
                delivery_kills += 1
            assert delivery_kills >= 1, "everything was delivered before a kill mid-delivery"
            if not work.alive():
                work.start()
            _wait(lambda: _settled(store), 90, "work did not settle", work)
            time.sleep(2 * ALERTING_INTERVAL_S)  # a repeat would show up by now
            assert work.alive(), work.tail()
        finally:
            work.stop()
            api.stop()
        _assert_evaluated_once(store)
        _assert_each_webhook_id_once(store, hook, trainer, slack, delivery_kills)
    store.dispose()


def _assert_evaluated_once(store: Store) -> None:
    runs = query(
        store,
        "SELECT version_id, window_start_us, segment_key, data_state, status, attempts "
        "FROM evaluation_runs",
    )
    # An empty window can close between settling and the worker's stop: not yet taken.
    runs = [r for r in runs if not (r[4] == "pending" and r[5] == 0 and r[3] == "e0.0.l0.0")]
    keys = Counter(r[:4] for r in runs)
    assert max(keys.values()) == 1, f"evaluated more than once: {keys.most_common(3)}"
    assert {r[4] for r in runs} == {"done"}, f"runs not done: {[r for r in runs if r[4] != 'done']}"
    [(with_events,)] = query(store, "SELECT COUNT(*) FROM evaluation_runs WHERE n_events > 0")
    assert with_events == WINDOWS * len(VERSIONS)
    taken_over = sum(1 for r in runs if r[5] > 1)
    assert taken_over >= 1, "no kill landed inside an evaluation"
    twice = query(
        store,
        "SELECT run_id, metric, segment, column_name, label FROM metric_results "
        "GROUP BY 1, 2, 3, 4, 5 HAVING COUNT(*) > 1",
    )
    assert twice == []
    [(results,)] = query(
        store,
        "SELECT COUNT(DISTINCT m.run_id) FROM metric_results m "
        "JOIN evaluation_runs r ON r.id = m.run_id WHERE r.n_events > 0",
    )
    assert results == WINDOWS * len(VERSIONS), "a window with events has no results"
    print(f"runs taken over after a kill: {taken_over}")


def _assert_each_webhook_id_once(
    store: Store,
    hook: WebhookReceiver,
    trainer: WebhookReceiver,
    slack: FakeSlack,
    kills: int,
) -> None:
    sql = "SELECT idempotency_key FROM deliveries WHERE kind = '{}' AND target = '{}'"
    kinds = (("notification", "hook"), ("notification", "slack"), ("pipeline", "trainer"))
    keys = {(k, t): {key for (key,) in query(store, sql.format(k, t))} for k, t in kinds}
    assert len(keys[("notification", "hook")]) == EXPECTED_NOTIFICATIONS
    assert len(keys[("notification", "slack")]) == EXPECTED_NOTIFICATIONS
    assert len(keys[("pipeline", "trainer")]) == 1
    hook_ids = Counter(r.headers.get(HEADER_ID) for r in hook.requests)
    trainer_ids = Counter(r.headers.get(HEADER_ID) for r in trainer.requests)
    # An idempotent receiver processes each webhook-id once: the ids are the deliveries'.
    assert set(hook_ids) == keys[("notification", "hook")]
    assert set(trainer_ids) == keys[("pipeline", "trainer")]
    repeats = sum(hook_ids.values()) - len(hook_ids) + sum(trainer_ids.values()) - len(trainer_ids)
    # A kill can cut one delivery of each loop short: alerting's and retraining's.
    assert 0 <= repeats <= DELIVERY_LOOPS * kills, f"{repeats} webhook repeats after {kills} kills"
    # Each Slack delivery is one message, carrying its delivery's key.
    slack_keys = Counter(slack.deliveries())
    assert set(slack_keys) == keys[("notification", "slack")], slack_keys
    assert max(slack_keys.values()) == 1, f"posted more than once: {slack_keys.most_common(3)}"
    assert len(slack.messages) == EXPECTED_NOTIFICATIONS
    looked = len(slack.calls_to("conversations.history"))
    found = _found_by_a_repeat(store)
    print(
        f"delivery kills {kills}: webhook redeliveries with the same webhook-id {repeats}; "
        f"Slack: {looked} looks for an earlier post, {found} found (not posted again), "
        f"0 duplicate messages (Slack calls {len(slack.calls)})"
    )


def _found_by_a_repeat(store: Store) -> int:
    sql = (
        "SELECT a.detail FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id "
        "WHERE d.target = 'slack'"
    )
    return sum("by an earlier attempt" in str(detail) for (detail,) in query(store, sql))
