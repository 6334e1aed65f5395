"""Pipeline callbacks through the API: progress, the new challenger with its reference,
authentication, validation, idempotency; then the challenger evaluated against the champion.
Both stores."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from evaluators.windows import US
from modelwatch.app import create_app
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.webhooks import generate_secret, signed_headers
from retrain.trigger import new_webhook_id
from tests.alerts.helpers import Results
from tests.conftest import churn_event, churn_reference_csv
from tests.retrain.conftest import Loop
from tests.retrain.helpers import (
    PIPELINE,
    POLICY,
    SECRET,
    PipelineReceiver,
    World,
    audit,
    requests,
    retrain_config,
)

T0 = 1_763_596_800  # 2025-11-20T00:00:00Z
EVAL_HOUR = T0 + 48 * 3600  # a window of live traffic two days after the drift


def _succeeded(retrain_id: str, version: str = "v3", csv: bytes | None = None) -> dict[str, Any]:
    return {
        "retrain_id": retrain_id,
        "status": "succeeded",
        "message": "trained on 90 days",
        "version": {
            "version": version,
            "description": "retrained after drift",
            "reference": {
                "format": "csv",
                "base64": base64.b64encode(csv or churn_reference_csv()).decode(),
            },
        },
    }


def _post(
    api: TestClient,
    body: dict[str, Any],
    secret: str | None = SECRET,
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    raw = orjson.dumps(body)
    signed = signed_headers([secret], new_webhook_id(), raw, timestamp) if secret else {}
    response: Response = api.post(
        "/v1/retrain/callback",
        content=raw,
        headers={"content-type": "application/json", **signed, **(headers or {})},
    )
    return response


def _versions(api: TestClient) -> dict[str, Any]:
    return {v["version"]: v for v in api.get("/v1/models/churn").json()["versions"]}


def test_a_signed_callback_reports_progress_then_registers_the_challenger(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    running = _post(api, {"retrain_id": retrain_id, "status": "running", "progress": 0.4})
    assert running.status_code == 200, running.text
    assert running.json()["status"] == "running" and running.json()["progress"] == 0.4
    (listed,) = api.get("/v1/retrain", params={"model": "churn"}).json()["retrains"]
    assert listed["uid"] == retrain_id
    assert listed["status"] == "running" and listed["policy"] == POLICY

    done = _post(api, _succeeded(retrain_id))
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["status"] == "completed" and answer["progress"] == 1.0
    assert answer["completed_at"] is not None and answer["new_version_id"] is not None
    versions = _versions(api)
    assert versions["v3"]["alias"] == "challenger"
    assert versions["v2"]["alias"] is None  # the old challenger gave way
    assert versions["v1"]["alias"] == "champion"  # the champion stays until promoted
    assert versions["v3"]["reference"]["rows"] == 40
    assert versions["v3"]["reference"]["uploaded_by"] == f"pipeline:{PIPELINE}"
    assert versions["v3"]["description"] == "retrained after drift"

    trail = [(r.action, r.actor) for r in audit(store, model="churn") if r.subject != POLICY]
    pipeline = f"pipeline:{PIPELINE}"
    assert trail[-7:] == [
        ("retrain.requested", "system"),
        ("pipeline.delivered", "system"),
        ("retrain.running", pipeline),
        ("version.registered", pipeline),
        ("alias.moved", pipeline),
        ("reference.uploaded", pipeline),
        ("retrain.completed", pipeline),
    ]
    (completed,) = audit(store, "retrain.completed")
    assert completed.version == "v3" and completed.subject == retrain_id
    assert completed.details["reference_rows"] == 40


def test_a_repeated_succeeded_callback_is_idempotent(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    first = _post(api, _succeeded(retrain_id))
    assert first.status_code == 200
    records = len(audit(store))
    again = _post(api, _succeeded(retrain_id))  # the pipeline retried: a new webhook-id
    assert again.status_code == 200 and again.json() == first.json()
    assert len(audit(store)) == records  # nothing changed
    assert sorted(_versions(api)) == ["v1", "v2", "v3"]
    other = _post(api, _succeeded(retrain_id, version="v4"))
    assert other.status_code == 409 and "already completed with version 'v3'" in other.text
    assert sorted(_versions(api)) == ["v1", "v2", "v3"]


def test_callbacks_need_a_signature_or_an_admin_key(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    keys = KeyStore(store)
    admin, read = keys.create("ops", Scope.ADMIN), keys.create("viewer", Scope.READ)
    body = {"retrain_id": retrain_id, "status": "running", "progress": 0.1}
    unsigned = _post(api, body, secret=None)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unauthorized"
    wrong_scope = _post(api, body, secret=None, headers={"Authorization": f"Bearer {read}"})
    assert wrong_scope.status_code == 403
    assert requests(store)[0]["status"] == "delivered"  # nothing applied
    by_key = _post(api, body, secret=None, headers={"Authorization": f"Bearer {admin}"})
    assert by_key.status_code == 200 and by_key.json()["status"] == "running"
    assert audit(store, "retrain.running")[-1].actor == "ops"
    signed = _post(api, {**body, "progress": 0.5})  # the signature is the credential
    assert signed.status_code == 200 and signed.json()["progress"] == 0.5
    assert audit(store, "retrain.running")[-1].actor == f"pipeline:{PIPELINE}"


def test_a_bad_signature_is_refused_with_json(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    body = {"retrain_id": retrain_id, "status": "running", "progress": 0.2}
    for response in (
        _post(api, body, secret=generate_secret()),  # another secret
        _post(api, body, timestamp=int(time.time()) - 3600),  # a replay of an old callback
    ):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "bad_signature"
    raw = orjson.dumps(body)
    tampered = api.post(
        "/v1/retrain/callback",
        content=orjson.dumps({**body, "progress": 0.9}),
        headers={"content-type": "application/json", **signed_headers([SECRET], "msg_x", raw)},
    )
    assert tampered.status_code == 401 and "no signature matches" in tampered.json()["detail"]
    assert requests(store)[0]["status"] == "delivered" and requests(store)[0]["progress"] is None
    assert audit(store, "retrain.running") == []


def test_another_pipelines_secret_cannot_report_on_this_retrain(
    store: Store, settings: Settings, receiver: PipelineReceiver
) -> None:
    other_secret = generate_secret()
    config = retrain_config(
        receiver.url,
        pipelines=[{"name": "deployer", "url": receiver.url, "secrets": [other_secret]}],
    )
    results = Results(store)
    with TestClient(create_app(settings, store, config)) as api:
        state = api.app.state  # type: ignore[attr-defined]
        loop = Loop(api, World(store, results, state.alerting, state.retrain), receiver)
        retrain_id = loop.request_retrain()
        body = {"retrain_id": retrain_id, "status": "running"}
        assert _post(api, body, secret=other_secret).status_code == 401
        assert _post(api, body).status_code == 200


def test_an_invalid_reference_registers_nothing(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    no_age = pl.read_csv(churn_reference_csv()).drop("age").write_csv().encode()
    missing = _post(api, _succeeded(retrain_id, csv=no_age))
    assert missing.status_code == 422
    errors = missing.json()["errors"]
    assert [(e["loc"], e["msg"]) for e in errors] == [
        (["version", "reference", "age"], "required column is missing")
    ]
    bad_value = pl.read_csv(churn_reference_csv()).with_columns(pl.lit("old").alias("age"))
    wrong = _post(api, _succeeded(retrain_id, csv=bad_value.write_csv().encode()))
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["version", "reference", "age"]
    not_base64 = _succeeded(retrain_id)
    not_base64["version"]["reference"]["base64"] = "not base64!"
    bad = _post(api, not_base64)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["version", "reference", "base64"]
    unknown = _post(api, {**_succeeded(retrain_id), "status": "done"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["status"]
    no_version = _post(api, {"retrain_id": retrain_id, "status": "succeeded"})
    assert no_version.status_code == 422 and no_version.json()["errors"][0]["loc"] == ["version"]
    assert sorted(_versions(api)) == ["v1", "v2"]
    assert requests(store)[0]["status"] == "delivered"
    assert audit(store, "version.registered", version="v3") == []
    # the pipeline fixes its file and reports again
    assert _post(api, _succeeded(retrain_id)).status_code == 200
    assert _versions(api)["v3"]["alias"] == "challenger"


def test_a_callback_for_an_unknown_or_finished_retrain(loop: Loop) -> None:
    api = loop.api
    retrain_id = loop.request_retrain()
    unknown = _post(api, {"retrain_id": "msg_nope", "status": "running"}, secret=None)
    assert unknown.status_code == 404
    assert (
        _post(api, {"retrain_id": retrain_id, "status": "failed", "message": "OOM"}).json()[
            "status"
        ]
        == "failed"
    )
    late = _post(api, {"retrain_id": retrain_id, "status": "running", "progress": 0.9})
    assert late.status_code == 409
    assert _post(api, _succeeded(retrain_id)).status_code == 409
    assert sorted(_versions(api)) == ["v1", "v2"]


# --- the challenger is compared with the champion -------------------------------------


def _traffic(api: TestClient, n: int = 120) -> None:
    """Shadow traffic in one window: the same requests scored by v1 and v3, then labels.
    The champion is right on 60% of them, the challenger on 95%."""
    ts = EVAL_HOUR + 60
    truth = [i % 2 for i in range(n)]
    champion = [t if i % 5 < 3 else 1 - t for i, t in enumerate(truth)]
    challenger = [t if i % 20 else 1 - t for i, t in enumerate(truth)]
    for version, predictions in (("v1", champion), ("v3", challenger)):
        events = [
            churn_event(i, timestamp=ts + i, prediction=p, score=0.9 if p else 0.1)
            for i, p in enumerate(predictions)
        ]
        r = api.post(
            "/v1/predictions", json={"model": "churn", "version": version, "events": events}
        )
        assert r.status_code == 200 and r.json()["accepted"] == n, r.text
    labels = [{"request_id": f"req-{i}", "label": t} for i, t in enumerate(truth)]
    assert (
        api.post("/v1/ground-truth", json={"model": "churn", "labels": labels}).status_code == 200
    )


def _evaluate(api: TestClient) -> None:
    body = {
        "name": "compare",
        "model": "churn",
        "window": "1h",
        "checks": ["accuracy", "champion_challenger", "champion_challenger_sequential"],
        "min_samples": 20,
    }
    assert api.post("/v1/monitors", json=body).status_code == 201
    service = api.app.state.evaluation  # type: ignore[attr-defined]
    monitor = service.monitors.get_by_name("compare")
    service.planner.plan(monitor, (EVAL_HOUR + 3600 + 60) * US, since_us=EVAL_HOUR * US)
    assert service.drain(30) >= 2


def test_the_new_challenger_is_compared_with_the_champion(loop: Loop) -> None:
    api = loop.api
    retrain_id = loop.request_retrain()
    assert _post(api, _succeeded(retrain_id)).status_code == 200
    _traffic(api)
    _evaluate(api)
    results = api.get(
        "/v1/models/churn/results", params={"metric": "champion_challenger", "version": "v3"}
    ).json()["results"]
    accuracy = next(r for r in results if r["label"] == "accuracy" and r["segment"] is None)
    assert accuracy["status"] == "ok" and accuracy["n"] == 120
    assert accuracy["value"] == pytest.approx(0.95 - 0.6)
    assert 0 < accuracy["ci_low"] < accuracy["value"] < accuracy["ci_high"]
    assert accuracy["window_start"] == "2025-11-22T00:00:00Z"
    champion = api.get(
        "/v1/models/churn/results", params={"metric": "champion_challenger", "version": "v1"}
    ).json()["results"]
    assert champion == []  # the champion is not compared with itself

    ledger = api.get("/v1/models/churn/ledger").json()
    assert ledger["model"] == "churn"
    assert ledger["champion"]["version"] == "v1" and ledger["champion"]["reference"] is None
    (challenger,) = ledger["challengers"]
    assert challenger["version"] == "v3" and challenger["alias"] == "challenger"
    assert challenger["alias_moved_by"] == f"pipeline:{PIPELINE}"
    assert challenger["reference"]["rows"] == 40
    assert 0 <= challenger["reference"]["age_seconds"] < 120
    compared = {
        c["figure"]: c for c in challenger["comparison"] if c["metric"] == "champion_challenger"
    }
    assert compared["accuracy"]["metric"] == "champion_challenger"
    assert compared["accuracy"]["value"] == pytest.approx(accuracy["value"])
    assert compared["accuracy"]["window_start"] == "2025-11-22T00:00:00Z"
    # The sequential comparison is in the ledger too, with its always-valid interval.
    sequential = [c for c in challenger["comparison"] if c["metric"].endswith("_sequential")]
    assert {c["figure"] for c in sequential} >= {"accuracy"}, challenger["comparison"]
    (seq,) = [c for c in sequential if c["figure"] == "accuracy"]
    assert seq["ci_low"] is not None and seq["ci_low"] < seq["value"] < seq["ci_high"]
    requested, completed = ledger["last_retrain_requested"], ledger["last_retrain_completed"]
    assert requested["retrain_id"] == completed["retrain_id"] == retrain_id
    assert requested["status"] == "completed" and requested["policy"] == POLICY
    assert completed["new_version"] == "v3" and completed["completed_at"] is not None
    assert ledger["last_evaluation"]["version"] in ("v1", "v3")
    assert ledger["last_evaluation"]["window_start"] == "2025-11-22T00:00:00Z"
    assert ledger["last_promotion"] is None
