"""The Dash app's data layer on SQLite and PostgreSQL, and its API-key guard."""

from __future__ import annotations

import base64

import polars as pl
from fastapi.testclient import TestClient

from dashboards.app.data import DashData
from dashboards.app.pages.alerts import parse_silence_form
from modelwatch.app import create_app
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.policies import PolicySpec
from modelwatch.settings import Settings
from modelwatch.store.alerts import AlertStore
from modelwatch.store.engine import Store
from modelwatch.store.results import ResultQuery, query_results
from tests.dashboards.dash_fixtures import FAMILIES, seed

THRESHOLD = PolicySpec.model_validate(
    {
        "name": "acc",
        "model": "churn",
        "condition": {"any": [{"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}}]},
    }
)


def test_results_are_the_stored_current_results_with_version_and_family(store: Store) -> None:
    seeded = seed(store, 30, ("churn",))
    data = DashData(store, lambda: [THRESHOLD], FAMILIES)
    frame = data.results("churn", days=None)
    v1 = seeded.version_ids["v1"]
    stored = query_results(store, ResultQuery([v1], metric="accuracy"))
    shown = frame.filter((pl.col("version_id") == v1) & (pl.col("metric") == "accuracy"))
    assert shown["value"].to_list() == [r["value"] for r in stored]
    assert shown["window_start_us"].to_list() == seeded.windows_us
    assert set(shown["alias"]) == {"champion"}
    assert set(frame.filter(pl.col("metric") == "data_drift")["family"]) == {"drift"}
    assert frame["window_start_us"].n_unique() == 30
    recent = data.results("churn", days=1)
    # The newest window and the 23 before it: a day back from the newest window's start.
    assert recent["window_start_us"].n_unique() == 24
    assert sorted(set(recent["window_start_us"])) == seeded.windows_us[-24:]
    (rule,) = data.policy_thresholds("churn")
    assert (rule.metric, rule.op, rule.value) == ("accuracy", "<", 0.8)
    assert data.policy_thresholds("fraud") == []


def test_fleet_figures_worst_status_events_and_firing_alerts(store: Store) -> None:
    seed(store, 30, ("churn",))
    data = DashData(store, list, FAMILIES)
    versions = data.versions("churn")
    activity = data.run_activity().join(versions, on="version_id")
    assert sorted(activity["events_24h"].to_list()) == [24 * 500, 24 * 500]
    assert data.firing_counts() == {"churn": 1}
    ledger = data.ledger()
    unevaluated = ledger.filter(pl.col("version") == "v3")
    assert unevaluated["status"].to_list() == [None]
    moves = data.alias_moves()
    assert moves.select("alias", "from_version", "to_version", "changed_by").rows() == [
        ("champion", None, "v1", "ana"),
        ("challenger", None, "v3", "ana"),
        ("challenger", "v3", "v2", "ben"),
    ]
    transitions = data.transitions("churn")
    assert transitions["to_state"].to_list() == ["firing", "pending"]
    assert set(transitions["version"]) == {"v1"}


def test_a_silence_from_the_form_is_stored_like_the_api_stores_it(store: Store) -> None:
    data = DashData(store, list, {})
    matchers, seconds, comment, author = parse_silence_form(
        'model=churn, severity=~"crit.*"', "90m", " retraining ", "ana"
    )
    created = data.create_silence(matchers, seconds, author, comment)
    (stored,) = AlertStore(store).silences()
    assert stored == created
    assert [(m.name, m.op, m.value) for m in stored.matchers] == [
        ("model", "=", "churn"),
        ("severity", "=~", "crit.*"),
    ]
    assert (stored.ends_at - stored.starts_at).total_seconds() == 5400
    assert stored.comment == "retraining"


def test_the_silence_form_names_the_field_at_fault() -> None:
    cases = {
        ("", "2h", "c", "a"): "matchers:",
        ("model", "2h", "c", "a"): "matchers:",
        ("model=x", "soon", "c", "a"): "duration:",
        ("model=x", "0s", "c", "a"): "duration:",
        ("model=x", "2h", " ", "a"): "comment:",
        ("model=x", "2h", "c", ""): "created by:",
    }
    for fields, prefix in cases.items():
        try:
            parse_silence_form(*fields)
        except ValueError as exc:
            assert str(exc).startswith(prefix), (fields, exc)
        else:
            raise AssertionError(f"{fields} was accepted")


def _basic(token: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"me:{token}".encode()).decode()}


def test_dash_is_open_without_keys_and_needs_a_read_key_once_keys_exist(store: Store) -> None:
    with TestClient(create_app(Settings(database_url=store.url), store)) as client:
        assert client.get("/dash", follow_redirects=False).headers["location"] == "/dash/"
        assert client.get("/dash/_dash-layout").status_code == 200
        ingest = KeyStore(store).create("pipeline", Scope.INGEST)
        read = KeyStore(store).create("viewer", Scope.READ)
        refused = client.get("/dash/_dash-layout")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/dash/_dash-layout", headers=_basic(ingest)).status_code == 401
        assert client.get("/dash/_dash-layout", headers=_basic("mw_bad_key")).status_code == 401
        assert client.get("/dash/_dash-layout", headers=_basic(read)).status_code == 200
        bearer = {"authorization": f"Bearer {read}"}
        assert client.get("/dash/_dash-layout", headers=bearer).status_code == 200
        # A read key sees the alerts page but cannot silence (the header is the guard's own).
        forged = {**bearer, "x-modelwatch-principal": "admin:root"}
        answer = client.post("/dash/_dash-update-component", json=SUBMIT, headers=forged)
        assert "needs an admin key" in answer.text
        assert AlertStore(store).silences() == []
        admin = KeyStore(store).create("lead", Scope.ADMIN)
        answer = client.post("/dash/_dash-update-component", json=SUBMIT, headers=_basic(admin))
        assert answer.status_code == 200, answer.text
        (silence,) = AlertStore(store).silences()
        assert silence.created_by == "ana (lead)"


def _state(field: str, value: str) -> dict[str, str]:
    return {"id": field, "property": "value", "value": value}


# What the browser posts when "Create silence" is clicked.
SUBMIT = {
    "output": "..silence-result.children...silences.children..",
    "outputs": [
        {"id": "silence-result", "property": "children"},
        {"id": "silences", "property": "children"},
    ],
    "inputs": [{"id": "silence-submit", "property": "n_clicks", "value": 1}],
    "changedPropIds": ["silence-submit.n_clicks"],
    "state": [
        _state("silence-matchers", "model=churn"),
        _state("silence-duration", "1h"),
        _state("silence-comment", "maintenance"),
        _state("silence-creator", "ana"),
    ],
}
