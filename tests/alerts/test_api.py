"""/v1/policies, /v1/alerts, /v1/silences, and policy validation at config load."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.cli import cli
from tests.alerts.helpers import Results, accuracy, drift

POLICY = {"name": "drift", "condition": {"status": {"metric": "ks", "column": "*"}}}


def test_policies_are_created_listed_and_validated(client: TestClient) -> None:
    assert client.post("/v1/policies", json=POLICY).status_code == 201
    assert client.post("/v1/policies", json=POLICY).status_code == 409
    listed = client.get("/v1/policies").json()["policies"]
    assert [(p["name"], p["source"]) for p in listed] == [("drift", "api")]
    bad = {"name": "x", "condition": {"threshold": {"metric": "acuracy", "value": 0.9}}}
    r = client.post("/v1/policies", json=bad)
    assert r.status_code == 422 and "unknown metric 'acuracy'" in r.json()["detail"]
    two = {
        "name": "y",
        "condition": {"threshold": {"metric": "accuracy", "value": 1}, "status": {"metric": "ks"}},
    }
    r = client.post("/v1/policies", json=two)
    assert r.status_code == 422 and "exactly one condition kind" in r.json()["detail"]


def test_a_policy_calling_a_pipeline_the_config_lacks_is_refused(client: TestClient) -> None:
    actions = ["notify", {"retrain": {"pipeline": "trainer"}}, {"promote": {"deploy": "cd"}}]
    r = client.post("/v1/policies", json={**POLICY, "actions": actions})
    assert r.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["errors"]}
    assert errors == {
        (
            "actions",
            1,
            "retrain",
            "pipeline",
        ): "no pipeline named 'trainer' in the config (known: [])",
        ("actions", 2, "promote", "deploy"): "no pipeline named 'cd' in the config (known: [])",
    }
    assert client.get("/v1/policies").json()["policies"] == []  # nothing stored


def test_alerts_and_silences(client: TestClient, store: object) -> None:
    results = Results(store)  # type: ignore[arg-type]
    client.post("/v1/policies", json=POLICY)
    results.window(0, [drift("age", 0.4, True)])
    client.app.state.alerting.engine.evaluate()  # type: ignore[attr-defined]
    alerts = client.get("/v1/alerts", params={"state": "firing"}).json()["alerts"]
    assert [a["labels"]["feature"] for a in alerts] == ["age"]
    assert alerts[0]["silenced_by"] is None
    silence = {
        "matchers": ['feature="age"'],
        "duration": "2h",
        "created_by": "ana",
        "comment": "deploying fix",
    }
    r = client.post("/v1/silences", json=silence)
    assert r.status_code == 201 and r.json()["state"] == "active"
    silence_id = r.json()["id"]
    assert client.get("/v1/alerts").json()["alerts"][0]["silenced_by"] == silence_id
    detail = client.get(f"/v1/alerts/{alerts[0]['id']}").json()
    assert [t["to_state"] for t in detail["transitions"]] == ["firing"]
    assert client.delete(f"/v1/silences/{silence_id}").json()["state"] == "expired"
    assert client.get("/v1/alerts").json()["alerts"][0]["silenced_by"] is None
    assert client.delete("/v1/silences/999").status_code == 404
    assert client.get("/v1/alerts/999").status_code == 404
    assert client.get("/v1/alerts", params={"state": "exploded"}).status_code == 422


def test_an_alert_muted_by_a_firing_critical_says_so_in_the_list_and_alone(
    client: TestClient, store: object
) -> None:
    results = Results(store)  # type: ignore[arg-type]
    low = {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}}
    client.post(
        "/v1/policies", json={"name": "accuracy-low", "severity": "critical", "condition": low}
    )
    client.post("/v1/policies", json={**POLICY, "severity": "warning"})
    results.window(0, [accuracy(0.5), drift("age", 0.4, True)])
    client.app.state.alerting.engine.evaluate()  # type: ignore[attr-defined]
    listed = {a["labels"]["alertname"]: a for a in client.get("/v1/alerts").json()["alerts"]}
    assert {name: a["state"] for name, a in listed.items()} == {
        "accuracy-low": "firing",
        "drift": "firing",
    }
    # the default rule: a firing critical mutes the same model's warnings
    assert {name: a["inhibited"] for name, a in listed.items()} == {
        "accuracy-low": False,
        "drift": True,
    }
    for a in listed.values():
        alone = client.get(f"/v1/alerts/{a['id']}").json()
        assert (alone["inhibited"], alone["silenced_by"]) == (a["inhibited"], None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"matchers": [], "duration": "1h", "created_by": "a", "comment": "c"}, "matchers"),
        ({"matchers": ["model=fraud"], "created_by": "a", "comment": "c"}, "ends_at"),
        (
            {"matchers": ["model=~("], "duration": "1h", "created_by": "a", "comment": "c"},
            "matchers",
        ),
        (
            {"matchers": ["model=fraud"], "duration": "1h", "created_by": "a", "comment": ""},
            "comment",
        ),
    ],
)
def test_bad_silences_name_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    r = client.post("/v1/silences", json=body)
    assert r.status_code == 422
    assert any(field in str(e["loc"]) for e in r.json()["errors"]), r.json()


def test_malformed_policies_fail_config_load_with_file_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(
        "receivers: [{name: oncall, slack: {token: x, channel: '#a'}}]\n"
        "route: {receiver: pager}\n"
        "policies:\n  - name: p\n"
        "    condition: {threshold: {metric: accuracy, op: '<<', value: 1}}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code != 0
    assert (
        f"{path}: policies[0].condition.threshold.op:" in result.output and "'<<'" in result.output
    )
    path.write_text(
        "receivers: [{name: oncall, slack: {token: x, channel: '#a'}}]\nroute: {receiver: pager}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert "route.receiver: no receiver named 'pager'" in result.output
    path.write_text(
        "policies:\n  - name: p\n    condition: {threshold: {metric: acuracy, value: 1}}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert f"{path}: policies[0].condition: unknown metric 'acuracy'" in result.output
