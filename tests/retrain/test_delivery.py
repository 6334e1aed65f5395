"""Retrain webhooks to a local pipeline receiver: signed, retried, throttled; both stores."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.webhooks import HEADER_ID, verify
from retrain.service import DELIVERY_FAILED_ALERT
from tests.alerts.receivers import Reply
from tests.retrain.helpers import (
    PIPELINE,
    POLICY,
    SECRET,
    PipelineReceiver,
    World,
    attempts,
    audit,
    deliveries,
    requests,
    retrain_config,
    seconds_from_now,
)


@pytest.fixture
def world(store: Store, receiver: PipelineReceiver) -> World:
    return World.make(store, retrain_config(receiver.url))


def _ids(receiver: PipelineReceiver) -> list[str]:
    return [r.headers[HEADER_ID] for r in receiver.requests]


def test_a_firing_policy_sends_one_signed_retrain_webhook(
    world: World, receiver: PipelineReceiver
) -> None:
    world.drift()
    world.service.cycle()
    assert len(receiver.requests) == 1
    hook = receiver.requests[0]
    assert hook.method == "POST" and hook.headers["content-type"] == "application/json"
    assert hook.headers["authorization"] == "Bearer airflow-token"  # the pipeline's own headers
    (request,) = requests(world.store)
    assert verify(SECRET, hook.headers, hook.body) == request["uid"] == hook.headers[HEADER_ID]
    payload = hook.json()
    assert payload["type"] == "retrain.requested"
    data = payload["data"]
    assert data["retrain_id"] == request["uid"]
    assert (data["model"], data["version"], data["alias"]) == ("churn", "v1", "champion")
    assert (data["policy"], data["severity"]) == (POLICY, "warning")
    assert data["window"] == {"start": "2025-11-20T00:00:00Z", "end": "2025-11-20T01:00:00Z"}
    assert data["alert"]["labels"]["alertname"] == POLICY
    assert [(r["metric"], r["column"], r["status"]) for r in data["results"]] == [
        ("ks", "age", "breach")
    ]
    assert data["results"][0]["value"] == pytest.approx(0.4)
    assert data["results"][0]["p_value"] == pytest.approx(0.01)
    # the action's hints are merged over the pipeline's
    assert data["training_data"] == {
        "table": "warehouse.churn_events",
        "since": "90d",
        "label_delay": "7d",
    }
    assert data["callback_url"] == "http://modelwatch.test/v1/retrain/callback"
    assert request["status"] == "delivered" and request["policy"] == POLICY
    (delivery,) = deliveries(world.store)
    assert delivery["status"] == "delivered" and delivery["idempotency_key"] == request["uid"]
    assert [a["ok"] for a in attempts(world.store, delivery["id"])] == [1]
    actions = [r.action for r in audit(world.store, model="churn")]
    assert actions[-2:] == ["retrain.requested", "pipeline.delivered"]


def test_the_same_episode_is_never_sent_as_new_work(
    world: World, receiver: PipelineReceiver
) -> None:
    world.drift()
    world.service.cycle()
    world.drift()  # still drifting: the same alert episode
    world.service.cycle()
    world.service.cycle()
    assert len(receiver.requests) == 1
    assert len(requests(world.store)) == 1 and len(deliveries(world.store)) == 1


def test_retries_after_5xx_keep_the_webhook_id(world: World, receiver: PipelineReceiver) -> None:
    receiver.script(Reply(500, body="boom"), Reply(502), Reply(503))
    world.drift()
    world.service.cycle()
    assert len(receiver.requests) == 4
    (request,) = requests(world.store)
    assert set(_ids(receiver)) == {request["uid"]}  # the receiver's idempotency key
    for hook in receiver.requests:
        assert verify(SECRET, hook.headers, hook.body) == request["uid"]
    assert len({hook.body for hook in receiver.requests}) == 1  # the same payload each time
    (delivery,) = deliveries(world.store)
    tries = attempts(world.store, delivery["id"])
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in tries] == [
        (1, 500, 0),
        (2, 502, 0),
        (3, 503, 0),
        (4, 200, 1),
    ]
    assert "HTTP 500: boom" in tries[0]["detail"]
    assert delivery["status"] == "delivered" and request["status"] == "delivered"
    world.service.cycle()
    assert len(receiver.requests) == 4  # delivered work is not sent again


def test_retries_after_connection_refused(store: Store) -> None:
    down = PipelineReceiver()
    port, url = down.port, down.url
    down.stop()  # nothing listens: connection refused
    world = World.make(store, retrain_config(url))
    world.drift()
    world.service.cycle(delivery_budget_s=0)  # decide the request, deliver nothing yet
    (request,) = requests(world.store)
    assert request["status"] == "requested"
    worker = world.service.delivery
    assert worker.run_one() is not None and worker.run_one() is not None
    (delivery,) = deliveries(world.store)
    tries = attempts(world.store, delivery["id"])
    assert [(a["ok"], a["status_code"]) for a in tries] == [(0, None), (0, None)]
    assert all("ConnectError" in a["detail"] for a in tries)
    assert delivery["status"] == "pending" and requests(world.store)[0]["status"] == "requested"
    with PipelineReceiver(port=port) as back:
        world.service.cycle()
        assert [r.headers[HEADER_ID] for r in back.requests] == [request["uid"]]
        assert verify(SECRET, back.requests[0].headers, back.requests[0].body)
    (delivery,) = deliveries(world.store)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert requests(world.store)[0]["status"] == "delivered"


def test_retry_after_is_honoured_on_429_and_503(world: World, receiver: PipelineReceiver) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    receiver.script(
        Reply(429, {"Retry-After": "120"}), Reply(503, {"Retry-After": format_datetime(later)})
    )
    world.drift()
    world.service.cycle()
    assert len(receiver.requests) == 1  # not retried before Retry-After, fast retries or not
    (delivery,) = deliveries(world.store)
    assert delivery["status"] == "pending"
    assert 110 < seconds_from_now(delivery["next_attempt_at"]) <= 120
    assert attempts(world.store, delivery["id"])[0]["retry_after"] == 120
    world.service.cycle()
    assert len(receiver.requests) == 1
    world.make_due()
    world.service.cycle()
    assert len(receiver.requests) == 2
    (delivery,) = deliveries(world.store)
    assert 3500 < seconds_from_now(delivery["next_attempt_at"]) <= 3600  # an HTTP date
    assert [a["status_code"] for a in attempts(world.store, delivery["id"])] == [429, 503]
    world.make_due()
    world.service.cycle()
    assert len(receiver.requests) == 3 and len(set(_ids(receiver))) == 1
    assert deliveries(world.store)[0]["status"] == "delivered"


def test_410_disables_the_endpoint_until_it_is_enabled(
    world: World, receiver: PipelineReceiver, settings: Settings
) -> None:
    receiver.script(Reply(410, body="pipeline retired"))
    world.drift()
    world.service.cycle()
    assert len(receiver.requests) == 1  # 410 is final: no retries
    (request,) = requests(world.store)
    assert request["status"] == "dead" and "410" in request["reason"]
    assert deliveries(world.store)[0]["status"] == "dead"
    failed = world.service.alerts.for_policy(DELIVERY_FAILED_ALERT)
    assert [a.state for a in failed.values()] == ["firing"]
    with TestClient(create_app(settings, world.store, retrain_config(receiver.url))) as api:
        (shown,) = api.get("/v1/pipelines").json()["pipelines"]
        assert shown["name"] == PIPELINE and shown["secrets"] == 1
        assert "410 Gone: pipeline retired" in shown["disabled"]["reason"]
        assert SECRET not in str(shown)

        world.new_episode()
        world.end_cooldown()
        world.service.cycle()
        assert len(receiver.requests) == 1  # later requests are held back, not sent
        suppressed = requests(world.store)[-1]
        assert suppressed["status"] == "suppressed"
        assert suppressed["reason"].startswith(f"pipeline {PIPELINE!r} is disabled")
        assert "410" in suppressed["reason"]

        assert api.post("/v1/pipelines/nope/enable").status_code == 404
        enabled = api.post(f"/v1/pipelines/{PIPELINE}/enable")
        assert enabled.status_code == 200
        assert api.get("/v1/pipelines").json()["pipelines"][0]["disabled"] is None
    assert [(r.action, r.actor) for r in audit(world.store, "pipeline.")][:2] == [
        ("pipeline.disabled", "system"),
        ("pipeline.delivery_failed", "system"),
    ]
    assert audit(world.store, "pipeline.enabled")[0].actor == "anonymous"
    world.new_episode()
    world.end_cooldown()
    world.service.cycle()
    assert len(receiver.requests) == 2
    assert requests(world.store)[-1]["status"] == "delivered"
    # the delivery that got through resolves the delivery-failed alert
    failed = world.service.alerts.for_policy(DELIVERY_FAILED_ALERT)
    assert [a.state for a in failed.values()] == ["resolved"]


def test_cooldown_holds_then_lets_a_new_request_through(
    world: World, receiver: PipelineReceiver
) -> None:
    world.drift()
    world.service.cycle()
    world.settle()  # the first retrain is over (failed), so only the cooldown can hold
    world.new_episode()
    world.service.cycle()
    assert len(receiver.requests) == 1
    first, held = requests(world.store)
    assert held["status"] == "suppressed"
    assert held["reason"].startswith("cooldown: the last retrain for this policy was requested")
    assert len(deliveries(world.store)) == 1  # nothing queued for it
    (record,) = audit(world.store, "retrain.suppressed")
    assert record.details["reason"] == held["reason"] and record.actor == "system"
    world.service.cycle()
    assert len(requests(world.store)) == 2  # decided once per episode
    world.end_cooldown()
    world.new_episode()
    world.service.cycle()
    assert len(receiver.requests) == 2
    third = requests(world.store)[-1]
    assert third["status"] == "delivered"
    assert _ids(receiver) == [first["uid"], third["uid"]] and first["uid"] != third["uid"]


def test_cooldown_is_per_policy(store: Store, receiver: PipelineReceiver) -> None:
    first = retrain_config(receiver.url).policies[0].model_dump(mode="json", by_alias=True)
    second = {**first, "name": "age-drift-2"}
    world = World.make(store, retrain_config(receiver.url, policies=[first, second]))
    world.drift()
    world.service.cycle()
    assert [(r["policy"], r["status"]) for r in requests(store)] == [
        (POLICY, "delivered"),
        ("age-drift-2", "suppressed"),  # one retrain of a model at a time
    ]
    world.settle()
    world.new_episode()
    world.service.cycle()
    # the first policy is in its cooldown; the second never made a request, so it has none
    assert [(r["policy"], r["status"]) for r in requests(store)[2:]] == [
        (POLICY, "suppressed"),
        ("age-drift-2", "delivered"),
    ]
    assert "cooldown" in requests(store)[2]["reason"]
    assert len(receiver.requests) == 2


def test_a_retrain_in_flight_is_not_triggered_again(
    world: World, receiver: PipelineReceiver
) -> None:
    world.drift()
    world.service.cycle()
    first = requests(world.store)[0]
    assert first["status"] == "delivered"  # the pipeline has it: in flight
    world.new_episode()
    world.end_cooldown()
    world.service.cycle()
    assert len(receiver.requests) == 1
    held = requests(world.store)[-1]
    assert held["status"] == "suppressed"
    assert held["reason"] == f"retrain {first['uid']} of 'churn' is still in flight"
    world.settle("completed")
    world.new_episode()
    world.end_cooldown()
    world.service.cycle()
    assert len(receiver.requests) == 2 and requests(world.store)[-1]["status"] == "delivered"


def test_concurrent_workers_make_one_request_per_episode(
    world: World, receiver: PipelineReceiver
) -> None:
    world.drift()
    config = retrain_config(receiver.url)
    others = [world.another_worker(config).trigger for _ in range(3)]
    threads = [threading.Thread(target=trigger.run) for trigger in others]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    world.service.cycle()
    assert len(requests(world.store)) == 1 and len(receiver.requests) == 1


def test_exhausted_retries_mark_the_retrain_dead_and_raise_an_alert(
    store: Store, receiver: PipelineReceiver
) -> None:
    receiver.answer_with(Reply(500, body="trainer down", delay=0.2))
    world = World.make(store, retrain_config(receiver.url, pipeline={"max_age": "1s"}))
    world.drift()
    world.service.cycle()
    assert len(receiver.requests) >= 2  # retried until the delivery's maximum age
    assert len(set(_ids(receiver))) == 1
    (delivery,) = deliveries(store)
    assert delivery["status"] == "dead"
    assert len(attempts(store, delivery["id"])) == len(receiver.requests)
    (request,) = requests(store)
    assert request["status"] == "dead" and "HTTP 500: trainer down" in request["reason"]
    assert request["completed_at"] is not None
    (alert,) = world.service.alerts.for_policy(DELIVERY_FAILED_ALERT).values()
    assert alert.state == "firing"
    assert alert.labels == {
        "alertname": DELIVERY_FAILED_ALERT,
        "model": "churn",
        "pipeline": PIPELINE,
        "severity": "critical",
    }
    assert request["uid"] in alert.annotations["description"]
    (failed,) = audit(store, "pipeline.delivery_failed")
    assert failed.model == "churn" and failed.subject == request["uid"]
    assert failed.details["attempts"] == len(receiver.requests)
    assert "trainer down" in failed.details["error"]
    count = len(receiver.requests)
    world.service.cycle()
    assert len(receiver.requests) == count  # dead stays dead
    # the next delivery that gets through resolves the alert
    receiver.answer_with(Reply(200))
    world.new_episode()
    world.end_cooldown()
    world.service.cycle()
    assert requests(store)[-1]["status"] == "delivered"
    (alert,) = world.service.alerts.for_policy(DELIVERY_FAILED_ALERT).values()
    assert alert.state == "resolved"
