"""Promotion: a challenger that beats the champion takes the champion alias, at once or
after approval, and the deployment pipeline is told. Both stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.results import MetricResult
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.webhooks import HEADER_ID, generate_secret, verify
from tests.alerts.helpers import Results
from tests.retrain.helpers import PipelineReceiver, World, audit, retrain_config

WINS = "challenger-wins"
DEPLOY_SECRET = generate_secret()


def _config(url: str, promote: dict[str, Any]) -> Any:
    policy = {
        "name": WINS,
        "model": "churn",
        "severity": "info",
        # the per-window test: one stored window's CI decides
        "condition": {
            "challenger_beats_champion": {"metric": "accuracy", "margin": 0.01, "test": "window"}
        },
        "actions": ["notify", {"promote": promote}],
    }
    deployer = {"name": "deployer", "url": url, "secrets": [DEPLOY_SECRET]}
    return retrain_config(url, policies=[policy], pipelines=[deployer])


@dataclass
class Promotion:
    api: TestClient
    world: World
    receiver: PipelineReceiver
    results: Results
    auth: dict[str, str] = field(default_factory=dict)

    def challenger_wins(self) -> None:
        """v2 (challenger) beats v1 by 0.2 accuracy, CI [0.1, 0.3]; evaluate and act."""
        win = MetricResult(
            "champion_challenger", 0.2, 500, label="accuracy", ci_low=0.1, ci_high=0.3
        )
        self.results.window(0, [win], version="v2")
        self.world.alerting.engine.evaluate()
        self.world.service.cycle()

    def aliases(self) -> dict[str, str | None]:
        versions = self.api.get("/v1/models/churn", headers=self.auth).json()["versions"]
        return {v["version"]: v["alias"] for v in versions}

    def ledger(self) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get("/v1/models/churn/ledger", headers=self.auth).json()
        return body


def _promotion(
    store: Store, settings: Settings, receiver: PipelineReceiver, promote: dict[str, Any]
) -> Iterator[Promotion]:
    results = Results(store)
    with TestClient(create_app(settings, store, _config(receiver.url, promote))) as api:
        state = api.app.state  # type: ignore[attr-defined]
        world = World(store, results, state.alerting, state.retrain)
        yield Promotion(api, world, receiver, results)


@pytest.fixture
def auto(store: Store, settings: Settings, receiver: PipelineReceiver) -> Iterator[Promotion]:
    yield from _promotion(store, settings, receiver, {"deploy": "deployer"})


@pytest.fixture
def gated(store: Store, settings: Settings, receiver: PipelineReceiver) -> Iterator[Promotion]:
    yield from _promotion(
        store, settings, receiver, {"require_approval": True, "deploy": "deployer"}
    )


def test_a_winning_challenger_is_promoted_automatically(auto: Promotion) -> None:
    assert auto.aliases() == {"v1": "champion", "v2": "challenger"}
    auto.challenger_wins()
    assert auto.aliases() == {"v1": None, "v2": "champion"}
    (promoted,) = audit(auto.world.store, "model.promoted")
    assert (promoted.model, promoted.version) == ("churn", "v2")
    assert promoted.actor == f"policy:{WINS}"
    assert promoted.details["approved_by"] == f"policy:{WINS}"
    assert promoted.details["previous_champion"] == "v1"
    (approval,) = auto.api.get("/v1/approvals").json()["approvals"]
    assert approval["status"] == "approved" and approval["decided_by"] == f"policy:{WINS}"
    last = auto.ledger()["last_promotion"]
    assert last["version"] == "v2" and last["approved_by"] == f"policy:{WINS}"
    assert last["previous_champion"] == "v1" and last["approval_id"] == approval["id"]
    assert auto.ledger()["champion"]["alias_moved_by"] == f"policy:{WINS}"
    # the deployment pipeline is told, signed with its own secret
    (hook,) = auto.receiver.requests
    assert verify(DEPLOY_SECRET, hook.headers, hook.body) == hook.headers[HEADER_ID]
    assert hook.json()["type"] == "model.promoted"
    assert hook.json()["data"] == {
        "model": "churn",
        "version": "v2",
        "previous_champion": "v1",
        "approved_by": f"policy:{WINS}",
        "approval_id": approval["id"],
    }
    auto.world.alerting.engine.evaluate()
    auto.world.service.cycle()  # the same episode promotes once
    assert len(audit(auto.world.store, "model.promoted")) == 1
    assert len(auto.receiver.requests) == 1


def test_with_approval_a_pending_request_waits_for_an_admin(gated: Promotion) -> None:
    api, store = gated.api, gated.world.store
    gated.challenger_wins()
    assert gated.aliases() == {"v1": "champion", "v2": "challenger"}  # not yet
    assert gated.receiver.requests == []
    (pending,) = api.get("/v1/approvals", params={"status": "pending"}).json()["approvals"]
    assert pending["policy"] == WINS and pending["details"]["version"] == "v2"
    assert api.get("/v1/approvals", params={"status": "approved"}).json()["approvals"] == []
    (requested,) = audit(store, "approval.requested")
    assert requested.actor == "system" and requested.subject == str(pending["id"])
    gated.world.service.cycle()
    assert len(api.get("/v1/approvals").json()["approvals"]) == 1  # asked once per episode

    keys = KeyStore(store)
    admin = {"Authorization": f"Bearer {keys.create('release-manager', Scope.ADMIN)}"}
    read = {"Authorization": f"Bearer {keys.create('viewer', Scope.READ)}"}
    gated.auth = read
    decision = {"decision": "approve", "comment": "offline eval looks good"}
    url = f"/v1/approvals/{pending['id']}"
    assert api.post(url, json=decision).status_code == 401
    assert api.post(url, json=decision, headers=read).status_code == 403
    assert api.post("/v1/approvals/999", json=decision, headers=admin).status_code == 404
    approved = api.post(url, json=decision, headers=admin)
    assert approved.status_code == 200
    assert approved.json() == {"id": pending["id"], "status": "approved"}
    assert gated.aliases() == {"v1": None, "v2": "champion"}
    last = gated.ledger()["last_promotion"]
    assert last["approved_by"] == "release-manager" and last["approval_id"] == pending["id"]
    assert last["version"] == "v2" and last["previous_champion"] == "v1"
    assert [(r.action, r.actor) for r in audit(store, "approval.")] == [
        ("approval.requested", "system"),
        ("approval.approved", "release-manager"),
    ]
    assert audit(store, "model.promoted")[0].actor == "release-manager"
    again = api.post(url, json={"decision": "reject"}, headers=admin)
    assert again.status_code == 409 and "already approved" in again.json()["detail"]
    # the deploy webhook goes out with the next cycle
    gated.world.service.cycle()
    (hook,) = gated.receiver.requests
    assert verify(DEPLOY_SECRET, hook.headers, hook.body)
    assert hook.json()["data"]["approved_by"] == "release-manager"


def test_a_rejected_promotion_leaves_the_champion(gated: Promotion) -> None:
    api, store = gated.api, gated.world.store
    gated.challenger_wins()
    (pending,) = api.get("/v1/approvals", params={"status": "pending"}).json()["approvals"]
    url = f"/v1/approvals/{pending['id']}"
    rejected = api.post(url, json={"decision": "reject", "comment": "not on a Friday"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert gated.aliases() == {"v1": "champion", "v2": "challenger"}
    (decided,) = api.get("/v1/approvals", params={"status": "rejected"}).json()["approvals"]
    assert decided["decided_by"] == "anonymous" and decided["comment"] == "not on a Friday"
    assert audit(store, "model.promoted") == []
    assert gated.ledger()["last_promotion"] is None
    assert api.post(url, json={"decision": "approve"}).status_code == 409
    assert gated.aliases()["v2"] == "challenger"
    gated.world.service.cycle()  # the same episode is not asked again
    assert api.get("/v1/approvals", params={"status": "pending"}).json()["approvals"] == []
    assert gated.receiver.requests == []


def test_a_manual_champion_move_is_the_last_promotion(auto: Promotion) -> None:
    keys = KeyStore(auto.world.store)
    admin = {"Authorization": f"Bearer {keys.create('ana', Scope.ADMIN)}"}
    auto.auth = admin
    moved = auto.api.put("/v1/models/churn/aliases/champion", json={"version": "v2"}, headers=admin)
    assert moved.status_code == 200
    last = auto.ledger()["last_promotion"]
    assert last is not None
    assert (last["version"], last["previous_champion"], last["approved_by"]) == ("v2", "v1", "ana")
