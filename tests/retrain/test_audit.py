"""The audit log: every change of state with its actor, and GET /v1/audit's filters and
pages. Both stores."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.cli import cli
from modelwatch.config import Config
from modelwatch.settings import Settings
from modelwatch.store import audit as audit_log
from modelwatch.store.engine import Store
from tests.alerts.helpers import Results, accuracy
from tests.conftest import CHURN_SPEC
from tests.retrain.helpers import audit

CSV = b"age,plan,active,note\n31,pro,true,hi\n42,basic,false,yo\n"


def _key_from_cli(store: Store, name: str, scope: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["keys", "create", "--name", name, "--scope", scope],
        env={"MODELWATCH_DATABASE_URL": store.url},
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"mw_\S+", result.output)
    assert match is not None
    return match.group(0)


def _config() -> Config:
    return Config.model_validate(
        {
            "models": [{**CHURN_SPEC, "name": "fraud"}],
            "monitors": [{"name": "fraud-hourly", "model": "fraud", "checks": ["accuracy"]}],
        }
    )


def _trail(store: Store) -> list[tuple[str, str, str | None, str | None, str | None]]:
    return [(r.action, r.actor, r.model, r.version, r.subject) for r in audit(store)]


def test_every_change_of_state_is_audited_with_its_actor(store: Store, settings: Settings) -> None:
    token = _key_from_cli(store, "ops", "admin")
    ops = {"Authorization": f"Bearer {token}"}
    alerted = Results(store, models=("alerted",))  # actor 't', results for an alert
    with TestClient(create_app(settings, store, _config())) as api:
        assert api.post("/v1/models", json=CHURN_SPEC, headers=ops).status_code == 201
        for version, alias in (("v1", "champion"), ("v2", None)):
            body = {"version": version, "alias": alias}
            assert api.post("/v1/models/churn/versions", json=body, headers=ops).status_code == 201
        moved = api.put("/v1/models/churn/aliases/challenger", json={"version": "v2"}, headers=ops)
        assert moved.status_code == 200
        uploaded = api.post(
            "/v1/models/churn/versions/v1/reference",
            content=CSV,
            headers={**ops, "content-type": "text/csv"},
        )
        assert uploaded.status_code == 201, uploaded.text
        monitor = {"name": "churn-hourly", "model": "churn", "checks": ["accuracy"]}
        assert api.post("/v1/monitors", json=monitor, headers=ops).status_code == 201
        policy = {
            "name": "accuracy-low",
            "model": "alerted",
            "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
        }
        assert api.post("/v1/policies", json=policy, headers=ops).status_code == 201
        silence = {
            "matchers": ["model=churn"],
            "duration": "2h",
            "created_by": "ana",
            "comment": "retraining",
        }
        made = api.post("/v1/silences", json=silence, headers=ops)
        assert made.status_code == 201
        assert api.delete(f"/v1/silences/{made.json()['id']}", headers=ops).status_code == 200
        engine = api.app.state.alerting.engine  # type: ignore[attr-defined]
        alerted.window(0, [accuracy(0.5)], model="alerted")
        engine.evaluate()
        alerted.window(1, [accuracy(0.95)], model="alerted")
        engine.evaluate()
        shown = api.get("/v1/audit", params={"limit": 1000}, headers=ops).json()["records"]
    trail = _trail(store)
    assert [(r["action"], r["actor"]) for r in reversed(shown)] == [t[:2] for t in trail]
    expected = [
        ("api_key.created", "cli", None, None, "ops"),
        ("model.registered", "config", "fraud", None, None),
        ("monitor.created", "config", "fraud", None, "fraud-hourly"),
        ("model.registered", "ops", "churn", None, None),
        ("version.registered", "ops", "churn", "v1", None),
        ("alias.moved", "ops", "churn", "v1", "champion"),
        ("version.registered", "ops", "churn", "v2", None),
        ("alias.moved", "ops", "churn", "v2", "challenger"),
        ("reference.uploaded", "ops", "churn", "v1", None),
        ("monitor.created", "ops", "churn", None, "churn-hourly"),
        ("policy.created", "ops", "alerted", None, "accuracy-low"),
        ("silence.created", "ana (ops)", None, None, "1"),
        ("silence.expired", "ops", None, None, "1"),
        ("alert.firing", "system", "alerted", "v1", "accuracy-low"),
        ("alert.resolved", "system", "alerted", "v1", "accuracy-low"),
    ]
    assert [t for t in trail if t[1] != "t"] == expected
    details = {r.action: r.details for r in audit(store)}
    assert details["api_key.created"]["scope"] == "admin" and token not in str(details)
    assert details["reference.uploaded"]["rows"] == 2
    assert details["alias.moved"] == {"alias": "challenger", "from_version": None}
    assert details["silence.created"]["matchers"] == ["model=churn"]
    assert "accuracy" in details["alert.firing"]["cause"]
    assert details["policy.created"]["name"] == "accuracy-low"


def _seed(store: Store) -> datetime:
    """Twelve records an hour apart, newest now; returns now."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[tuple[str, str, str | None]] = [
        ("model.registered", "config", "churn"),
        ("version.registered", "ops", "churn"),
        ("retrain.requested", "system", "churn"),
        ("pipeline.delivered", "system", "churn"),
        ("retrain.running", "pipeline:trainer", "churn"),
        ("retrain.completed", "pipeline:trainer", "churn"),
        ("retrainer.started", "system", "churn"),  # not a retrain. record
        ("apixkey.created", "cli", None),  # '_' of api_key. must not match any character
        ("api_key.created", "cli", None),
        ("retrain.requested", "system", "fraud"),
        ("model.promoted", "ana", "churn"),
        ("retrain", "system", "churn"),
    ]
    with store.write() as conn:
        for i, (action, actor, model) in enumerate(rows):
            at = now - timedelta(hours=len(rows) - 1 - i)
            audit_log.record(conn, actor, action, model=model, subject=str(i), at=at)
    return now


def _subjects(api: TestClient, **params: Any) -> list[int]:
    r = api.get("/v1/audit", params=params)
    assert r.status_code == 200, r.text
    return [int(rec["subject"]) for rec in r.json()["records"]]


def test_audit_filters(store: Store, settings: Settings) -> None:
    now = _seed(store)
    with TestClient(create_app(settings, store)) as api:
        assert _subjects(api) == list(range(11, -1, -1))  # newest first
        assert _subjects(api, action="retrain.requested") == [9, 2]
        assert _subjects(api, action="retrain.") == [9, 5, 4, 2]
        assert _subjects(api, action="retrain*") == [11, 9, 6, 5, 4, 2]
        assert _subjects(api, action="retrain") == [11]  # exact without '.' or '*'
        assert _subjects(api, action="api_key.") == [8]
        assert _subjects(api, action="retrain.", model="churn") == [5, 4, 2]
        assert _subjects(api, model="fraud") == [9]
        assert _subjects(api, actor="pipeline:trainer") == [5, 4]
        assert _subjects(api, actor="system", action="retrain.") == [9, 2]
        since = (now - timedelta(hours=2, minutes=30)).isoformat().replace("+00:00", "Z")
        assert _subjects(api, since=since) == [11, 10, 9]
        naive = (now - timedelta(hours=2, minutes=30)).replace(tzinfo=None).isoformat()
        assert _subjects(api, since=naive) == [11, 10, 9]  # read as UTC
        until = (now - timedelta(hours=8, minutes=30)).isoformat()
        assert _subjects(api, until=until) == [2, 1, 0]
        assert _subjects(api, action="nothing.") == []
        assert api.get("/v1/audit", params={"limit": 0}).status_code == 422


def test_audit_pages_with_before_id(store: Store, settings: Settings) -> None:
    _seed(store)
    with TestClient(create_app(settings, store)) as api:
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 5}
        pages = 0
        while True:
            body = api.get("/v1/audit", params=params).json()
            seen += [int(r["subject"]) for r in body["records"]]
            pages += 1
            if body["next_before_id"] is None:
                break
            assert body["next_before_id"] == body["records"][-1]["id"]
            params["before_id"] = body["next_before_id"]
        assert seen == list(range(11, -1, -1)) and pages == 3
        filtered = api.get("/v1/audit", params={"action": "retrain.", "limit": 2}).json()
        assert [int(r["subject"]) for r in filtered["records"]] == [9, 5]
        rest = api.get(
            "/v1/audit",
            params={"action": "retrain.", "limit": 2, "before_id": filtered["next_before_id"]},
        ).json()
        assert [int(r["subject"]) for r in rest["records"]] == [4, 2]


@pytest.mark.parametrize(("scope", "status"), [("read", 200), ("ingest", 403)])
def test_reading_the_audit_log_needs_read_scope(
    store: Store, settings: Settings, scope: str, status: int
) -> None:
    token = _key_from_cli(store, "someone", scope)
    with TestClient(create_app(settings, store)) as api:
        assert api.get("/v1/audit").status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert api.get("/v1/audit", headers=headers).status_code == status
        # No model is registered: a read key gets past the scope check to the 404.
        ledger = api.get("/v1/models/churn/ledger", headers=headers).status_code
        assert ledger == (404 if status == 200 else status)
