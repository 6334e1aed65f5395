"""Every route's scope, enumerated from the OpenAPI document (a new route without an entry
here fails), plus the Dash app; and secrets never leave the service.

With keys configured: no key is 401, a key of too low a scope 403, the right scope
neither (nor a 5xx). ``ingest`` writes predictions, labels and usage only; ``read``
reads; ``admin`` manages. Bodies are small and valid-ish, so the answer is the same
whether auth is checked before or after the body is read.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import pytest

from modelwatch.app import create_app
from modelwatch.domain import Scope
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from tests.fuzz.world import World, world

OPEN = None
# Open by design, with the reason.
OPEN_ROUTES = {
    ("GET", "/healthz"): "liveness probe for orchestrators",
    ("GET", "/readyz"): "readiness probe for orchestrators",
}
SCOPES: dict[tuple[str, str], Scope] = {
    ("GET", "/v1/models"): Scope.READ,
    ("POST", "/v1/models"): Scope.ADMIN,
    ("GET", "/v1/models/{name}"): Scope.READ,
    ("POST", "/v1/models/{name}/versions"): Scope.ADMIN,
    ("PUT", "/v1/models/{name}/aliases/{alias}"): Scope.ADMIN,
    ("POST", "/v1/predictions"): Scope.INGEST,
    ("POST", "/v1/ground-truth"): Scope.INGEST,
    ("POST", "/v1/resource-usage"): Scope.INGEST,
    ("POST", "/v1/models/{name}/versions/{version}/reference"): Scope.ADMIN,
    ("POST", "/otlp/v1/metrics"): Scope.INGEST,
    ("POST", "/v1/cloudevents"): Scope.INGEST,
    ("POST", "/v1/monitors"): Scope.ADMIN,
    ("GET", "/v1/monitors"): Scope.READ,
    ("GET", "/v1/monitors/{monitor_id}"): Scope.READ,
    ("GET", "/v1/monitors/{monitor_id}/runs"): Scope.READ,
    ("GET", "/v1/models/{name}/results"): Scope.READ,
    ("GET", "/v1/policies"): Scope.READ,
    ("POST", "/v1/policies"): Scope.ADMIN,
    ("GET", "/v1/alerts"): Scope.READ,
    ("GET", "/v1/alerts/{alert_id}"): Scope.READ,
    ("GET", "/v1/silences"): Scope.READ,
    ("POST", "/v1/silences"): Scope.ADMIN,
    ("DELETE", "/v1/silences/{silence_id}"): Scope.ADMIN,
    # Without a signature the callback needs an admin key (the signed way is in tests/retrain).
    ("POST", "/v1/retrain/callback"): Scope.ADMIN,
    ("GET", "/v1/retrain"): Scope.READ,
    ("GET", "/v1/approvals"): Scope.READ,
    ("POST", "/v1/approvals/{approval_id}"): Scope.ADMIN,
    ("GET", "/v1/pipelines"): Scope.READ,
    ("POST", "/v1/pipelines/{name}/enable"): Scope.ADMIN,
    ("GET", "/v1/audit"): Scope.READ,
    ("GET", "/v1/models/{name}/ledger"): Scope.READ,
    ("GET", "/v1/models/{name}/retention"): Scope.READ,
    ("PUT", "/v1/models/{name}/retention"): Scope.ADMIN,
    ("DELETE", "/v1/models/{name}/retention"): Scope.ADMIN,
    ("GET", "/v1/runs/{run_id}/report"): Scope.READ,
    ("GET", "/metrics"): Scope.READ,
}
# Dash answers a key of too low a scope with 401, not 403: a browser asks for other
# credentials only after a 401.
DASH: dict[tuple[str, str], Scope] = {
    ("GET", "/dash/"): Scope.READ,
    ("GET", "/dash/_dash-layout"): Scope.READ,
    ("POST", "/dash/_dash-update-component"): Scope.READ,
}
PATH = {
    "name": "churn",
    "version": "v1",
    "alias": "champion",
    "monitor_id": "1",
    "alert_id": "1",
    "silence_id": "1",
    "approval_id": "1",
    "run_id": "1",
}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/predictions": {"model": "churn", "version": "v1", "events": []},
    "/v1/ground-truth": {"model": "churn", "labels": []},
    "/v1/resource-usage": {"model": "churn", "version": "v1", "samples": []},
    "/v1/retrain/callback": {"retrain_id": "msg_none", "status": "running"},
}
LOWER = {
    Scope.READ: [Scope.INGEST],
    Scope.INGEST: [Scope.READ],
    Scope.ADMIN: [Scope.READ, Scope.INGEST],
}


def _routes() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/spec.db")
        try:
            spec = create_app(Settings(database_url=store.url), store).openapi()
        finally:
            store.dispose()
    return sorted((m.upper(), p) for p, ops in spec["paths"].items() for m in ops)


ROUTES = _routes()


def test_every_route_has_an_expected_scope() -> None:
    missing = [r for r in ROUTES if r not in SCOPES and r not in OPEN_ROUTES]
    assert not missing, f"routes without an entry in the auth table: {missing}"
    stale = [r for r in (*SCOPES, *OPEN_ROUTES) if r not in ROUTES]
    assert not stale, f"entries for routes that no longer exist: {stale}"


def _call(w: World, method: str, path: str, headers: dict[str, str]) -> Any:
    url = path.format(**PATH)
    if method in ("GET", "DELETE"):
        return w.api.request(method, url, headers=headers)
    if path.endswith("/reference"):
        body = b"age,plan,active,note,prediction,target\n"
        return w.api.request(
            method, url, content=body, headers={**headers, "content-type": "text/csv"}
        )
    if path.startswith("/dash/"):
        return w.api.request(
            method, url, json={"output": "x", "inputs": [], "changedPropIds": []}, headers=headers
        )
    return w.api.request(method, url, json=BODIES.get(path, {}), headers=headers)


@pytest.fixture
def populated(store: Store) -> Any:
    with world(store) as w:
        yield w


@pytest.mark.parametrize(("method", "path"), [*ROUTES, *DASH], ids=lambda v: str(v))
def test_route_scope(populated: World, method: str, path: str) -> None:
    w, route = populated, (method, path)
    if route in OPEN_ROUTES:
        r = _call(w, method, path, {})
        assert r.status_code < 400, (route, r.status_code, r.text)
        return
    needed = {**SCOPES, **DASH}[route]
    r = _call(w, method, path, {})
    assert r.status_code == 401, (route, "no key", r.status_code, r.text[:300])
    for lower in LOWER[needed]:
        r = _call(w, method, path, w.headers(lower))
        if route in DASH:
            assert r.status_code == 401 and "cannot read" in r.text, (route, r.status_code)
        else:
            assert r.status_code == 403, (route, lower.value, r.status_code, r.text[:300])
    r = _call(w, method, path, w.headers(needed))
    assert r.status_code not in (401, 403) and r.status_code < 500, (
        route,
        needed.value,
        r.status_code,
        r.text[:300],
    )


def test_secrets_never_reach_logs_errors_the_audit_log_or_metrics(
    populated: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = populated
    prefix = w.tokens["read"].split("_")[1]
    wrong = f"mw_{prefix}_{'W' * 43}"
    secrets = [*w.tokens.values(), wrong, w.secret, wrong.split("_", 2)[2]]
    secrets += [t.split("_", 2)[2] for t in w.tokens.values()]
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for headers in ({"Authorization": f"Bearer {wrong}"}, {"Authorization": wrong}, {}):
            for path in ("/v1/models", "/v1/predictions", "/dash/"):
                method = "POST" if path == "/v1/predictions" else "GET"
                r = w.api.request(method, path, headers=headers, json=BODIES.get(path))
                assert r.status_code == 401, (path, r.status_code)
                seen.append(r.text + str(dict(r.headers)))
        for scope in Scope:
            r = w.api.get("/v1/models", headers=w.headers(scope))
            seen.append(r.text)
        audit = w.api.get("/v1/audit", headers=w.headers(Scope.ADMIN), params={"limit": 500})
        seen.append(audit.text)
        seen.append(w.api.get("/v1/pipelines", headers=w.headers(Scope.ADMIN)).text)
        seen.append(w.api.get("/metrics", headers=w.headers(Scope.READ)).text)
    seen += [rec.getMessage() + str(rec.args) + str(rec.exc_text) for rec in caplog.records]
    assert "api_key.created" in audit.text  # the audit log was read, and holds the keys' records
    everything = "\n".join(seen)
    for secret in secrets:
        assert secret not in everything, "a secret leaked"
