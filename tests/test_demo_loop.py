"""The demo's whole loop in simulated time: drift → alert → signed retrain webhook to the
local demo pipeline → its callback registers v3 as challenger with reference data →
v3 compared with the champion → v3 wins and is promoted → model.promoted webhook.

Like tests/test_demo_alerts.py (both on tests/demo_world.py): the API (for the SDK and
the pipeline's callbacks), the local Slack sink and the demo pipeline run in-process
with the demo's config; the evaluation, alerting and retrain services run on a
simulated clock, one 30-second step at a time (traffic, evaluation, alerting, then a
retrain cycle and the pipeline's work).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from demo.config import WIN_MARGIN, describe
from demo.pipeline import RETRAINED_DESCRIPTION, DemoPipeline
from modelwatch.store import tables as t
from modelwatch.store.alerts import AlertStore
from modelwatch.store.audit import AuditLog
from modelwatch.store.references import ReferenceStore
from modelwatch.webhooks import generate_secret, signed_headers
from tests.demo_world import DemoWorld, check_threads, demo_world

DRIFT_AT_MIN, DRIFT_MINUTES, END_MIN = 6, 6, 16


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with demo_world(tmp_path, pipeline=True) as w:
        yield w


def test_drift_retrain_challenger_promotion(world: DemoWorld) -> None:
    pipeline = world.pipeline
    assert pipeline is not None
    sim = world.simulator(DRIFT_AT_MIN, DRIFT_MINUTES)
    promoted_at = None
    try:
        while world.minutes() < DRIFT_AT_MIN:
            world.step(sim)
        assert pipeline.received == [], "no retrain before the drift"
        while world.minutes() < END_MIN and promoted_at is None:
            world.step(sim)
            if world.alias("v3") == "champion":
                promoted_at = world.minutes()
    finally:
        sim.close()

    # The retrain request: delivered, signed (the pipeline verifies), acted on once.
    assert pipeline.rejected == []
    kinds = [w.type for w in pipeline.received]
    assert kinds == ["retrain.requested", "model.promoted"], kinds
    request = pipeline.received[0].data
    assert request["model"] == "fraud" and request["version"] == "v1"
    assert request["policy"] == "fraud-drift-retrain"
    assert request["callback_url"] == f"{world.server.url}/v1/retrain/callback"
    assert pipeline.callbacks == [("running", 200), ("succeeded", 200)]

    # v3: registered as challenger by the callback, with its reference data.
    fraud = world.registry.get_model("fraud")
    v3 = world.registry.get_version(fraud, "v3")
    assert v3.description == RETRAINED_DESCRIPTION
    assert ReferenceStore(world.store).latest_by_version(fraud).get(v3.id) is not None

    # Compared with the champion while the drift was on, and winning: promoted.
    assert promoted_at is not None, "v3 was never promoted"
    assert promoted_at < DRIFT_AT_MIN + DRIFT_MINUTES, f"promoted after the drift: {promoted_at}"
    m = t.metric_results
    with world.store.read() as conn:
        rows = conn.execute(
            select(m.c.label, m.c.value, m.c.ci_high, m.c.status, m.c.detail).where(
                m.c.version_id == v3.id,
                m.c.metric == "champion_challenger_sequential",
                m.c.segment == "",
            )
        ).all()
    # the always-valid interval of the log-loss difference, summed over v3's windows
    wins = [
        r for r in rows if r.label == "log_loss" and r.status == "ok" and r.ci_high < -WIN_MARGIN
    ]
    assert wins, rows
    assert max(orjson.loads(r.detail)["windows"] for r in wins) > 1
    fired = AlertStore(world.store).for_policy("fraud-challenger-wins").values()
    assert [a.labels["version"] for a in fired] == ["v3"]
    assert world.alias("v1") is None and world.alias("v2") == "shadow"

    # The deploy webhook reached the pipeline; the simulator heard of both steps.
    promoted = pipeline.received[1].data
    assert promoted["version"] == "v3" and promoted["previous_champion"] == "v1"
    assert any("simulator: fraud v3 (challenger) now scores" in s for s in world.narration)
    assert any("simulator: fraud v3 is live as the champion" in s for s in world.narration)
    assert any(s.startswith("[pipeline] retrain.requested for fraud v1") for s in world.narration)

    audit = AuditLog(world.store)
    for action in ("retrain.requested", "retrain.completed", "model.promoted"):
        records = audit.query(action=action, model="fraud")
        assert len(records) == 1, (action, records)
    assert audit.query(action="retrain.completed")[0].version == "v3"
    assert audit.query(action="model.promoted")[0].actor == "policy:fraud-challenger-wins"
    assert "retraining: fraud-drift-retrain" in " ".join(describe(world.config))

    # One drift line per message for the served traffic, whichever versions score it; the
    # old champion's accuracy alert ends as no longer the champion's, not as recovered.
    said = check_threads(world.sink, "fraud served traffic")
    assert "fraud v3 traffic" not in said, "v3 scores the champion's requests: one stream"
    ended = [line for line in said.splitlines() if line.startswith("↩ fraud v1 (now")]
    assert all("no longer evaluated as champion" in line for line in ended), said


def test_the_pipeline_refuses_bad_signatures_and_ignores_repeats() -> None:
    secret = generate_secret()
    with DemoPipeline(secret) as pipeline:
        body = b'{"type": "demo.ping", "data": {}}'
        good = signed_headers([secret], "msg_1", body)
        with httpx.Client(timeout=10) as http:
            wrong = signed_headers([generate_secret()], "msg_1", body)
            assert http.post(pipeline.url, content=body, headers=wrong).status_code == 401
            tampered = http.post(pipeline.url, content=body + b" ", headers=good)
            assert tampered.status_code == 401
            assert http.post(pipeline.url, content=body, headers=good).status_code == 202
            again = http.post(pipeline.url, content=body, headers=good)
            assert again.status_code == 200 and again.json() == {"duplicate": True}
    assert [w.webhook_id for w in pipeline.received] == ["msg_1"]
    assert len(pipeline.rejected) == 2
