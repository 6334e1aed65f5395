"""Limits before work: a caller without a valid key is refused before its body is read,
every body is bounded in size and in time, on the ASGI app and on a real server.
Both stores."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.limits import INGEST_PATHS, UPLOAD_PATHS, RouteRules, required_scope
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from tests.conftest import CHURN_SPEC, free_port

MiB = 1024 * 1024
CHUNK = 64 * 1024
HUGE = 600 * MiB


@dataclass
class Sent:
    """What an ASGI app answered, and how much of the body it pulled."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pulled: int = 0

    def json(self) -> Any:
        return orjson.loads(self.body)


def drive(
    app: FastAPI,
    path: str,
    headers: dict[str, str],
    size: int,
    *,
    delay_s: float = 0.0,
    method: str = "POST",
) -> Sent:
    """Call ``app`` with a chunked body of ``size`` bytes, made as it is pulled."""
    sent = Sent()

    async def receive() -> dict[str, Any]:
        if sent.pulled >= size:
            await asyncio.sleep(3600)  # the client waits for its answer
        if delay_s:
            await asyncio.sleep(delay_s)
        chunk = b" " * min(CHUNK, size - sent.pulled)
        sent.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": sent.pulled < size}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            sent.body += message.get("body", b"")

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"transfer-encoding", b"chunked"), *raw],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    return sent


@pytest.fixture
def app(store: Store) -> FastAPI:
    return create_app(Settings(database_url=store.url, body_timeout_s=0.5), store)


@pytest.fixture
def keys(store: Store) -> dict[str, str]:
    ks = KeyStore(store)
    return {s.value: f"Bearer {ks.create(s.value, s)}" for s in Scope}


@pytest.mark.parametrize(
    ("auth", "status"),
    [(None, 401), ("Bearer mw_0000_wrong", 401), ("Basic eDp5", 401), ("read", 403)],
)
def test_a_typed_body_is_refused_before_it_is_read(
    app: FastAPI, keys: dict[str, str], auth: str | None, status: int
) -> None:
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["authorization"] = keys.get(auth, auth)
    sent = drive(app, "/v1/models", headers, HUGE)
    assert sent.status == status, sent.body
    assert sent.pulled == 0
    assert sent.json()["error"] == ("unauthorized" if status == 401 else "forbidden")
    assert sent.headers["connection"] == "close"


@pytest.mark.parametrize(
    "path", ["/v1/monitors", "/v1/policies", "/v1/silences", "/v1/models/churn/versions"]
)
def test_every_typed_body_route_authenticates_first(
    app: FastAPI, keys: dict[str, str], path: str
) -> None:
    sent = drive(app, path, {"authorization": keys["ingest"]}, HUGE)
    assert (sent.status, sent.pulled) == (403, 0)


def test_raw_body_routes_authenticate_before_reading_too(
    app: FastAPI, keys: dict[str, str]
) -> None:
    for path, auth in [("/v1/predictions", keys["read"]), ("/otlp/v1/metrics", None)]:
        headers = {"content-type": "application/json", **({"authorization": auth} if auth else {})}
        sent = drive(app, path, headers, HUGE)
        assert sent.status in (401, 403) and sent.pulled == 0, (path, sent)
        assert sent.headers["connection"] == "close"  # the rest of the body is never read


def test_a_chunked_body_is_cut_off_at_the_routes_limit(app: FastAPI, keys: dict[str, str]) -> None:
    admin = {"authorization": keys["admin"], "content-type": "application/json"}
    sent = drive(app, "/v1/models", admin, HUGE)
    assert sent.status == 413 and sent.json()["error"] == "payload_too_large"
    assert MiB < sent.pulled <= MiB + CHUNK  # the JSON routes' limit: 1 MiB
    ingest = {"authorization": keys["ingest"], "content-type": "application/json"}
    batch = drive(app, "/v1/predictions", ingest, HUGE)
    assert batch.status == 413
    assert 16 * MiB < batch.pulled <= 16 * MiB + CHUNK  # ingest batches: 16 MiB


def test_a_declared_length_over_the_limit_is_refused_at_once(
    store: Store, keys: dict[str, str]
) -> None:
    with TestClient(create_app(Settings(database_url=store.url), store)) as api:
        headers = {"authorization": keys["admin"]}
        big = api.post("/v1/models", content=b" " * (MiB + 1), headers=headers)
        assert big.status_code == 413, big.text
        assert big.json()["detail"] == f"request body of {MiB + 1} bytes exceeds the limit of {MiB}"
        assert api.post("/v1/models", json=CHURN_SPEC, headers=headers).status_code == 201
        # an ingest batch may be bigger than a JSON body: the JSON limit is not its limit
        events = {"model": "churn", "version": "v1", "events": [{"x": "y" * 2 * MiB}]}
        batch = api.post("/v1/predictions", json=events, headers={"authorization": keys["ingest"]})
        assert batch.status_code != 413


def test_a_slow_body_is_cut_off_with_408(app: FastAPI, keys: dict[str, str]) -> None:
    admin = {"authorization": keys["admin"], "content-type": "application/json"}
    started = time.monotonic()
    sent = drive(app, "/v1/models", admin, 10 * CHUNK, delay_s=0.2)
    assert sent.status == 408 and sent.json()["error"] == "request_timeout"
    assert time.monotonic() - started < 2
    assert sent.pulled < 10 * CHUNK


def test_open_routes_stay_open_and_small_bodies_pass(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app) as api:
        assert api.get("/healthz").status_code == 200
        assert api.get("/openapi.json").status_code == 200
        assert api.get("/v1/models").status_code == 401  # GETs: the dependency answers
        headers = {"authorization": keys["admin"]}
        assert api.post("/v1/models", json=CHURN_SPEC, headers=headers).status_code == 201


def test_the_limit_table_names_routes_that_exist(app: FastAPI) -> None:
    rules = RouteRules(app, Settings())
    routes = [c.original_route for c in iter_route_contexts(app.routes)]
    typed = [r for r in routes if isinstance(r, APIRoute) and r.body_field]
    assert typed, "no route with a typed body?"
    open_typed = [r.path for r in typed if required_scope(r) is None]
    assert open_typed == []  # each is authenticated by the middleware, before its body
    assert all(e.rule.limit == MiB for e in rules.routes() if e.route in typed)
    assert {getattr(e.route, "path", None) for e in rules.routes()} >= {
        *INGEST_PATHS,
        *UPLOAD_PATHS,
    }


# --- a real server ---------------------------------------------------------------------


@pytest.fixture
def server(store: Store, keys: dict[str, str]) -> Iterator[BackgroundServer]:
    settings = Settings(database_url=store.url, body_timeout_s=1.0)
    server = BackgroundServer(create_app(settings, store), "127.0.0.1", free_port())
    server.start()
    yield server
    server.stop()


def _post_chunked(server: BackgroundServer, path: str, auth: str, size: int) -> tuple[bytes, int]:
    """Send a chunked body of ``size`` bytes; the status line and how much went out."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
    sock.sendall((head + (f"authorization: {auth}\r\n" if auth else "") + "\r\n").encode())
    chunk = b"%x\r\n" % MiB + b" " * MiB + b"\r\n"
    sent = 0
    try:
        while sent < size:
            sock.sendall(chunk)
            sent += MiB
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection: the rest is never read
    try:
        status = sock.recv(4096).split(b"\r\n")[0]
    except OSError:
        status = b""
    sock.close()
    return status, sent


def test_a_server_refuses_an_unauthenticated_huge_body_without_reading_it(
    server: BackgroundServer, keys: dict[str, str]
) -> None:
    for auth, status in [("", b"401"), (keys["read"], b"403")]:
        line, sent = _post_chunked(server, "/v1/models", auth, HUGE)
        assert sent < 64 * MiB, f"the server read {sent // MiB} MiB"
        assert line.startswith(b"HTTP/1.1 " + status), line
    with httpx.Client(base_url=server.url, timeout=10) as api:  # the server still answers
        assert api.get("/healthz").status_code == 200


def test_a_server_cuts_off_a_slowloris_body_with_408(
    server: BackgroundServer, keys: dict[str, str]
) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    head = (
        "POST /v1/models HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: {keys['admin']}\r\ncontent-length: 1000\r\n\r\n"
    )
    sock.sendall(head.encode())
    started = time.monotonic()
    answer = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < 5 and not answer:
        try:
            sock.sendall(b" ")  # one byte every 0.2 s
            answer = sock.recv(4096)
        except TimeoutError:
            continue
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in answer and b"connection: close" in answer.lower()
    assert 0.9 < time.monotonic() - started < 3


def test_serve_runs_uvicorn_with_the_connection_limits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from click.testing import CliRunner

    from modelwatch.cli import cli
    from modelwatch.serving import KEEP_ALIVE_S

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kwargs: calls.append(kwargs))
    env = {"MODELWATCH_DATABASE_URL": store.url}
    result = CliRunner().invoke(cli, ["serve", "--no-scheduler", "--no-migrate"], env=env)
    assert result.exit_code == 0, result.output
    (options,) = calls
    assert options["timeout_keep_alive"] == KEEP_ALIVE_S
    assert options["h11_max_incomplete_event_size"] == 64 * 1024
