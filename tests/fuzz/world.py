"""A populated service for fuzzing and the auth table: churn with versions, a reference,
events, labels, usage, a monitor, a policy, a silence, a signed pipeline and keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.auth import KeyStore
from modelwatch.config import Config
from modelwatch.domain import Scope
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.webhooks import generate_secret
from tests.conftest import CHURN_SPEC, churn_event, churn_reference_csv

__all__ = ["PIPELINE", "World", "world"]

PIPELINE = "trainer"
# Nothing listens on the discard port, and no scheduler runs to deliver anything anyway.
PIPELINE_URL = "http://127.0.0.1:9/retrain"


@dataclass
class World:
    api: TestClient
    store: Store
    secret: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def headers(self, scope: Scope | None = Scope.ADMIN) -> dict[str, str]:
        return {} if scope is None else {"Authorization": f"Bearer {self.tokens[scope.value]}"}


def _config(secret: str) -> Config:
    return Config.model_validate(
        {
            "pipelines": [{"name": PIPELINE, "url": PIPELINE_URL, "secret": secret}],
            "external_url": "http://modelwatch.test",
        }
    )


def _populate(w: World) -> None:
    api, admin = w.api, w.headers()

    def ok(method: str, url: str, status: int = 200, **kwargs: object) -> dict[str, object]:
        r = api.request(method, url, headers={**admin, **kwargs.pop("headers", {})}, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, (method, url, r.status_code, r.text)
        body: dict[str, object] = r.json()
        return body

    ok("POST", "/v1/models", 201, json=CHURN_SPEC)
    ok("POST", "/v1/models/churn/versions", 201, json={"version": "v1", "alias": "champion"})
    ok("POST", "/v1/models/churn/versions", 201, json={"version": "v2", "alias": "challenger"})
    csv = {"content": churn_reference_csv(), "headers": {"content-type": "text/csv"}}
    ok("POST", "/v1/models/churn/versions/v1/reference", 201, **csv)
    events = [churn_event(i) for i in range(20)]
    ok("POST", "/v1/predictions", json={"model": "churn", "version": "v1", "events": events})
    labels = [{"request_id": f"req-{i}", "label": i % 2} for i in range(20)]
    ok("POST", "/v1/ground-truth", json={"model": "churn", "labels": labels})
    usage = [{"timestamp": 1763632800 + i, "latency_ms": 5.0 + i} for i in range(5)]
    ok("POST", "/v1/resource-usage", json={"model": "churn", "version": "v1", "samples": usage})
    monitor = {"name": "churn-hourly", "model": "churn", "checks": ["accuracy", "ks"]}
    w.ids["monitor"] = int(ok("POST", "/v1/monitors", 201, json=monitor)["id"])  # type: ignore[call-overload]
    policy = {"name": "drift", "condition": {"status": {"metric": "ks", "column": "*"}}}
    ok("POST", "/v1/policies", 201, json=policy)
    silence = {"matchers": ["model=churn"], "duration": "2h", "created_by": "fuzz", "comment": "x"}
    w.ids["silence"] = int(ok("POST", "/v1/silences", 201, json=silence)["id"])  # type: ignore[call-overload]


@contextmanager
def world(store: Store) -> Iterator[World]:
    """The app on ``store`` with one key per scope (``<scope>-key``), populated."""
    secret = generate_secret()
    settings = Settings(database_url=store.url, max_body_bytes=1024 * 1024)
    with TestClient(create_app(settings, store, _config(secret))) as api:
        keys = KeyStore(store)
        tokens = {s.value: keys.create(f"{s.value}-key", s) for s in Scope}
        w = World(api, store, secret, tokens)
        _populate(w)
        yield w
