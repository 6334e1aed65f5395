"""Every list route of the OpenAPI document pages the same way, on SQLite and PostgreSQL.

A list route is any GET that is not one item (the set below names those): each takes
``cursor`` and ``limit`` with a documented default and maximum, answers ``next`` and
``next_url`` beside its items with a matching ``Link`` header, and walking the cursor
returns every row exactly once. A malformed cursor is a 422 naming ``cursor``; a limit
past the maximum a 422 naming ``limit``. A new GET route that is neither listed here nor
one item fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from modelwatch.app import create_app
from modelwatch.config import Config
from modelwatch.settings import Settings
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.runs import PlannedRun, RunStore
from modelwatch.timeutil import utcnow
from modelwatch.webhooks import generate_secret
from tests.conftest import CHURN_SPEC

ROWS = 8  # more than two pages of PAGE
PAGE = 3
HOUR_US = 3_600_000_000
T0_US = 1_763_596_800_000_000

ONE_ITEM = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/models/{name}",
    "/v1/monitors/{monitor_id}",
    "/v1/alerts/{alert_id}",
    "/v1/runs/{run_id}/report",
    "/v1/models/{name}/retention",
}


@dataclass(frozen=True)
class ListRoute:
    items: str  # the body's list
    ident: str  # what tells one row from another
    truth: Callable[[Store], set[Any]]  # every row the route should return


def _ids(table: Any) -> Callable[[Store], set[Any]]:
    def read(store: Store) -> set[Any]:
        with store.read() as conn:
            return {i for (i,) in conn.execute(select(table.c.id))}

    return read


def _fixed(values: set[Any]) -> Callable[[Store], set[Any]]:
    return lambda _store: values


MODELS = {"churn"} | {f"model-{i}" for i in range(ROWS)}
VERSIONS = {f"v{i}" for i in range(ROWS)}
PIPELINES = {f"trainer-{i}" for i in range(ROWS)}
POLICIES = {f"policy-{i}" for i in range(ROWS)}
ROUTES: dict[str, ListRoute] = {
    "/v1/models": ListRoute("models", "name", _fixed(MODELS)),
    "/v1/audit": ListRoute("records", "id", _ids(t.audit_log)),
    "/v1/models/{name}/ledger": ListRoute("versions", "version", _fixed(VERSIONS)),
    "/v1/models/{name}/results": ListRoute(
        "results", "value", _fixed({float(i) for i in range(ROWS)})
    ),
    "/v1/monitors": ListRoute("monitors", "id", _ids(t.monitors)),
    "/v1/monitors/{monitor_id}/runs": ListRoute("runs", "id", _ids(t.evaluation_runs)),
    "/v1/policies": ListRoute("policies", "name", _fixed(POLICIES)),
    "/v1/alerts": ListRoute("alerts", "id", _ids(t.alerts)),
    "/v1/silences": ListRoute("silences", "id", _ids(t.silences)),
    "/v1/retrain": ListRoute("retrains", "id", _ids(t.retrain_requests)),
    "/v1/approvals": ListRoute("approvals", "id", _ids(t.approvals)),
    "/v1/pipelines": ListRoute("pipelines", "name", _fixed(PIPELINES)),
}


def _config() -> Config:
    pipelines = [
        {"name": name, "url": "http://127.0.0.1:9/retrain", "secret": generate_secret()}
        for name in sorted(PIPELINES)
    ]
    return Config.model_validate({"pipelines": pipelines})


def _ok(api: TestClient, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    response = api.request(method, url, **kwargs)
    assert response.status_code in (200, 201), (url, response.text)
    body: dict[str, Any] = response.json()
    return body


def _populate(api: TestClient, store: Store) -> dict[str, str]:
    """More rows than a page on every list route; the path parameters to reach them."""
    for name in sorted(MODELS):
        _ok(api, "POST", "/v1/models", json={**CHURN_SPEC, "name": name})
    for version in sorted(VERSIONS):
        _ok(api, "POST", "/v1/models/churn/versions", json={"version": version})
    monitors = [
        _ok(api, "POST", "/v1/monitors", json={"name": f"m{i}", "model": "churn", "checks": []})
        for i in range(ROWS)
    ]
    for name in sorted(POLICIES):
        condition = {"status": {"metric": "ks", "column": "*"}}
        _ok(api, "POST", "/v1/policies", json={"name": name, "condition": condition})
    for i in range(ROWS):
        silence = {"matchers": [f"n={i}"], "duration": "2h", "created_by": "t", "comment": "x"}
        _ok(api, "POST", "/v1/silences", json=silence)
    monitor_id = int(monitors[0]["id"])
    _catalog_rows(store, monitor_id)
    return {"name": "churn", "monitor_id": str(monitor_id)}


def _catalog_rows(store: Store, monitor_id: int) -> None:
    """Runs, results, alerts, retrains and approvals: written as the workers would."""
    with store.read() as conn:
        model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == "churn")).scalar()
        version_id = conn.execute(
            select(t.model_versions.c.id).where(t.model_versions.c.version == "v0")
        ).scalar()
    assert model_id is not None and version_id is not None
    starts = [T0_US + i * HOUR_US for i in range(ROWS)]
    RunStore(store).plan(
        [PlannedRun(monitor_id, version_id, s, s + HOUR_US, "", "e1.1", 1, 0) for s in starts]
    )
    now = utcnow()
    with store.write() as conn:
        runs = list(conn.execute(select(t.evaluation_runs.c.id).order_by(t.evaluation_runs.c.id)))
        conn.execute(
            insert(t.metric_results),
            [_result(runs[i][0], monitor_id, version_id, starts[i], i) for i in range(ROWS)],
        )
        conn.execute(insert(t.alerts), [_alert(i, now) for i in range(ROWS)])
        conn.execute(insert(t.retrain_requests), [_retrain(i, model_id, now) for i in range(ROWS)])
        conn.execute(
            insert(t.approvals), [_approval(i, model_id, version_id, now) for i in range(ROWS)]
        )


def _result(run_id: int, monitor_id: int, version_id: int, start: int, i: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "monitor_id": monitor_id,
        "version_id": version_id,
        "window_start_us": start,
        "window_end_us": start + HOUR_US,
        "current": 1,
        "segment": "",
        "metric": "volume",
        "column_name": "",
        "label": "",
        "value": float(i),
        "n": 1,
        "status": "ok",
        "detail": "",
    }


STATES = ("firing", "resolved", "pending", "inactive")


def _alert(i: int, now: Any) -> dict[str, Any]:
    labels = orjson.dumps({"model": "churn", "n": str(i)}).decode()
    return {
        "fingerprint": f"fp{i}",
        "policy": "policy-0",
        "model": "churn",
        "labels": labels,
        "annotations": "{}",
        "state": STATES[i % len(STATES)],
        "trend": "[]",
        "consecutive": 1,
        "updated_at": now,
    }


def _retrain(i: int, model_id: int, now: Any) -> dict[str, Any]:
    return {
        "uid": f"r{i}",
        "trigger_key": f"k{i}",
        "model_id": model_id,
        "policy": "policy-0",
        "pipeline": "trainer-0",
        "status": "completed",
        "reason": "",
        "requested_at": now,
        "updated_at": now,
    }


def _approval(i: int, model_id: int, version_id: int, now: Any) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "version_id": version_id,
        "policy": "policy-0",
        "action": "promote",
        "status": "rejected",
        "details": "{}",
        "requested_at": now,
        "comment": "",
    }


@pytest.fixture
def world(store: Store) -> Iterator[tuple[TestClient, dict[str, Any], dict[str, str]]]:
    settings = Settings(database_url=store.url, max_body_bytes=1024 * 1024)
    with TestClient(create_app(settings, store, _config())) as api:
        path = _populate(api, store)
        yield api, api.get("/openapi.json").json(), path


def _list_routes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p: ops["get"] for p, ops in spec["paths"].items() if "get" in ops and p not in ONE_ITEM}


def _walk(api: TestClient, url: str, items: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    next_url: str | None = url
    query: dict[str, Any] | None = params
    while next_url is not None:
        response = api.get(next_url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body[items]
        link = response.headers.get("link")
        if body["next"] is None:
            assert link is None and body["next_url"] is None
            next_url = None
        else:
            assert len(body[items]) == params["limit"], "a page before the last is full"
            match = re.fullmatch(r'<(.+)>; rel="next"', link or "")
            assert match and match.group(1) == body["next_url"]
            next_url, query = body["next_url"], None
    return rows


def test_every_list_route_is_known(world: Any) -> None:
    _, spec, _ = world
    assert set(_list_routes(spec)) == set(ROUTES)


def test_every_list_route_pages_each_row_once(world: Any, store: Store) -> None:
    api, spec, path = world
    for route, op in _list_routes(spec).items():
        params = {p["name"]: p for p in op.get("parameters", [])}
        assert {"cursor", "limit"} <= set(params), route
        limit = params["limit"]["schema"]
        assert limit["maximum"] >= limit["default"] >= 1, route
        url = route.format(**path)
        expected = ROUTES[route].truth(store)
        assert len(expected) > 2 * PAGE, route
        rows = _walk(api, url, ROUTES[route].items, {"limit": PAGE})
        seen = [r[ROUTES[route].ident] for r in rows]
        assert sorted(map(str, seen)) == sorted(map(str, expected)), route


# Not base64, not JSON, a float key, a key of five parts: no route's cursor. Then keys of
# the right kind no route returns: text with NUL, ids past 32 bits (every id key of a
# 32-bit column) and near 64 bits. A 200 is allowed only for those on routes whose
# key is of the other kind or a wider column, never a 5xx or a store's refusal.
BAD_CURSORS = ("%%%", "bm90IGpzb24", "WzEuNV0", "WyJhIiwiYiIsImMiLDEsMl0")
FORGED = ("WyJhXHUwMDAwYiJd", "WzIxNDc0ODM2NDhd", "WzQ2MTE2ODYwMTg0MjczODc5MDRd")


def test_bad_cursor_and_limit_are_422_naming_them(world: Any) -> None:
    api, spec, path = world
    for route, op in _list_routes(spec).items():
        url = route.format(**path)
        for cursor in BAD_CURSORS:
            response = api.get(url, params={"cursor": cursor})
            assert response.status_code == 422 and "cursor" in response.text, (route, cursor)
        for cursor in FORGED:
            response = api.get(url, params={"cursor": cursor})
            assert response.status_code in (200, 422), (route, cursor, response.text)
            if response.status_code == 422:
                assert response.json()["errors"][0]["loc"] == ["query", "cursor"], route
        maximum = {p["name"]: p for p in op["parameters"]}["limit"]["schema"]["maximum"]
        response = api.get(url, params={"limit": maximum + 1})
        assert response.status_code == 422 and "limit" in response.text, route


def test_filters_still_apply_across_pages(world: Any, store: Store) -> None:
    api, _, _ = world
    firing = _walk(api, "/v1/alerts", "alerts", {"limit": 1, "state": "firing"})
    assert {a["state"] for a in firing} == {"firing"} and len(firing) == 2
    every = _walk(api, "/v1/alerts", "alerts", {"limit": PAGE, "state": "all"})
    assert sorted(a["state"] for a in every) == sorted(STATES * (ROWS // len(STATES)))
    assert len(_walk(api, "/v1/alerts", "alerts", {"limit": PAGE})) == ROWS
    audit = _walk(api, "/v1/audit", "records", {"limit": PAGE, "action": "model.registered"})
    assert {r["model"] for r in audit} == MODELS


def test_before_id_still_pages_the_audit_log(world: Any, store: Store) -> None:
    api, _, _ = world
    ids = sorted(_ids(t.audit_log)(store), reverse=True)
    body = api.get("/v1/audit", params={"limit": PAGE}).json()
    assert [r["id"] for r in body["records"]] == ids[:PAGE]
    older = api.get("/v1/audit", params={"limit": PAGE, "before_id": body["next_before_id"]})
    assert [r["id"] for r in older.json()["records"]] == ids[PAGE : 2 * PAGE]
    last = api.get("/v1/audit", params={"limit": len(ids)}).json()
    assert last["next"] is None and last["next_before_id"] is None
