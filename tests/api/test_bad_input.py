"""Client errors are 4xx naming the field, identically on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from alerts.engine import PolicyEngine
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.http import ORJSONResponse, error_body
from modelwatch.policies import PolicySpec
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import churn_event

HUGE = 1180591620717411303424  # beyond 64 bits
INT4 = 2**31  # beyond PostgreSQL INTEGER
POLICY: dict[str, Any] = {
    "name": "low_accuracy",
    "model": "churn",
    "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.5}},
}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/monitors/{HUGE}"),
        ("GET", f"/v1/monitors/{INT4}"),
        ("GET", f"/v1/monitors/{-HUGE}/runs"),
        ("GET", f"/v1/alerts/{INT4}"),
        ("DELETE", f"/v1/silences/{HUGE}"),
        ("GET", f"/v1/runs/{HUGE}/report"),
    ],
)
def test_an_id_beyond_its_column_in_a_path_is_404(
    churn: TestClient, method: str, path: str
) -> None:
    r = churn.request(method, path)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


def test_an_approval_id_beyond_its_column_is_404(churn: TestClient) -> None:
    r = churn.post(f"/v1/approvals/{INT4}", json={"decision": "approve"})
    assert r.status_code == 404, r.text


def test_a_query_bound_beyond_its_column_is_422_naming_it(churn: TestClient) -> None:
    r = churn.get("/v1/audit", params={"before_id": HUGE})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["query", "before_id"]


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/monitors", "/v1/retrain", "/v1/approvals"])
def test_a_nul_in_a_query_parameter_is_422_naming_it(churn: TestClient, path: str) -> None:
    r = churn.get(path, params={"model": "churn\u0000"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["query", "model"]


@pytest.mark.parametrize(
    "path", ["/v1/models/ch%00urn", "/v1/models/churn%00/ledger", "/v1/models/x%00/results"]
)
def test_a_nul_in_a_path_parameter_finds_nothing(churn: TestClient, path: str) -> None:
    r = churn.get(path)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/models/churn/versions", {"version": "v3", "description": "a\u0000"}, "description"),
        ("/v1/policies", {**POLICY, "annotations": {"summary": "x\u0000"}}, "annotations"),
        (
            "/v1/silences",
            {
                "matchers": {"model": "churn"},
                "duration": "1h",
                "created_by": "me",
                "comment": "\u0000",
            },
            "comment",
        ),
    ],
)
def test_a_nul_in_a_request_model_is_422_naming_it(
    churn: TestClient, path: str, body: dict[str, Any], loc: str
) -> None:
    r = churn.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"][:2] == ["body", loc]


def test_an_integer_beyond_64_bits_in_a_body_is_answered_422(churn: TestClient) -> None:
    r = churn.put("/v1/models/churn/aliases/champion", json={"version": -10000000000000000000})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "version"]


def test_error_rendering_survives_any_input_value() -> None:
    inputs = [HUGE, b"\xff\x00", float("nan"), {"a": [HUGE, {"b": b"x"}]}, object()]
    error = ValidationFailed([FieldError(("f", i), "bad", value) for i, value in enumerate(inputs)])
    body = orjson.loads(ORJSONResponse(error_body(error), status_code=422).body)
    rendered = [e["input"] for e in body["errors"]]
    assert rendered[0] == str(HUGE)
    assert rendered[1] == "\\xff\x00"
    assert rendered[2] == "nan"
    assert rendered[3] == {"a": [str(HUGE), {"b": "x"}]}
    assert rendered[4].startswith("<object object")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predictions", {"model": "churn", "version": "v1", "events": [churn_event(1)]}),
        ("/v1/models/churn/versions", {"version": "v3"}),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_json_route_refuses_other_content_types(
    churn: TestClient, path: str, body: dict[str, Any], content_type: str
) -> None:
    r = churn.post(path, content=orjson.dumps(body), headers={"content-type": content_type})
    assert r.status_code == 415, r.text
    assert r.json()["error"] == "unsupported_media_type"
    assert "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/vnd.mw+json"]
)
def test_json_content_types_and_none_are_taken(churn: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = orjson.dumps({"version": "v3"})
    r = churn.post("/v1/models/churn/versions", content=body, headers=headers)
    assert r.status_code == 201, r.text
    batch = {"model": "churn", "version": "v1", "events": [churn_event(1)]}
    r = churn.post("/v1/predictions", content=orjson.dumps(batch), headers=headers)
    assert r.status_code == 200, r.text


def test_a_reference_sent_like_curl_data_binary_is_still_taken(churn: TestClient) -> None:
    csv = b"age,plan,active,note\n30,pro,true,a\n"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = churn.post("/v1/models/churn/versions/v1/reference", content=csv, headers=headers)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/models/churn/versions"])
def test_malformed_json_names_the_place_and_the_field(churn: TestClient, path: str) -> None:
    body = b'{"model": "churn", "version": "v1", "events": [{"request_id": "a"}, {"score": x}]}'
    r = churn.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["loc"] == ["body"]
    assert error["msg"].startswith(
        "malformed JSON at line 1 column 79 (char 78) in events[1].score:"
    )


def test_invalid_utf8_names_the_byte(churn: TestClient) -> None:
    body = b'{"model": "churn\xff"}'
    r = churn.post("/v1/predictions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["msg"] == "body is not valid UTF-8 at byte 16"


@pytest.mark.parametrize(
    "body",
    [{}, [], {"output": "nosuch.children"}, {"output": "page.children", "inputs": "x"}],
)
def test_a_malformed_dash_callback_is_422(churn: TestClient, body: object) -> None:
    r = churn.post("/dash/_dash-update-component", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"][0] == "body"


def test_a_dash_callback_still_authenticates_first(churn: TestClient, store: Store) -> None:
    KeyStore(store).create("reader", Scope.READ)
    r = churn.post("/dash/_dash-update-component", json={})
    assert r.status_code == 401, r.text


def test_a_wellformed_dash_callback_still_runs(churn: TestClient) -> None:
    body = {
        "output": "page.children",
        "outputs": {"id": "page", "property": "children"},
        "inputs": [{"id": "url", "property": "pathname", "value": "/dash/"}],
        "changedPropIds": ["url.pathname"],
    }
    r = churn.post("/dash/_dash-update-component", json=body)
    assert r.status_code == 200, r.text


def test_a_policy_for_an_unknown_model_is_refused(churn: TestClient) -> None:
    r = churn.post("/v1/policies", json={**POLICY, "model": "nosuch"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["model"]
    assert churn.post("/v1/policies", json=POLICY).status_code == 201


def test_a_policy_whose_model_is_gone_warns_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    policy = PolicySpec.model_validate({**POLICY, "model": "gone"})
    engine = PolicyEngine(store, Registry(store), lambda: [policy])
    with caplog.at_level(logging.WARNING, logger="alerts.engine"):
        assert engine.evaluate() == 0
        assert engine.evaluate() == 0
    records = [r for r in caplog.records if r.name == "alerts.engine"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "'gone'" in records[0].getMessage() and records[0].exc_info is None


@pytest.mark.parametrize(
    "when", [{"duration": 251606127377}, {"starts_at": "9999-12-31T00:00:00Z", "duration": "2d"}]
)
def test_a_silence_ending_past_the_calendar_is_422_naming_duration(
    churn: TestClient, when: dict[str, Any]
) -> None:
    body = {"matchers": {"model": "churn"}, "created_by": "me", "comment": "c", **when}
    r = churn.post("/v1/silences", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["duration"]


def test_a_float_timestamp_beyond_the_calendar_is_422_naming_it(churn: TestClient) -> None:
    event = {"request_id": "r1", "timestamp": 1.797693134862316e302, "features": {}}
    body = {"model": "churn", "version": "v1", "events": [{**event, "prediction": 0}]}
    r = churn.post("/v1/predictions", json=body)
    assert r.status_code == 422, r.text
    assert any("timestamp" in e["loc"] for e in r.json()["errors"]), r.text
