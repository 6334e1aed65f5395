"""The SDK against the real server (uvicorn, SQLite and PostgreSQL) that fails, then recovers."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from collector.sdk import Client, RetryPolicy
from modelwatch.app import create_app
from modelwatch.domain import Alias, ModelSpec
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC, churn_event, free_port

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INGEST = {"/v1/predictions", "/v1/ground-truth", "/v1/resource-usage"}
PATIENT = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)


class FlakyIngest:
    """Answers 503 to the first ``fail`` ingest requests. Then the first ``lose_acks``
    requests to each ingest path reach the app, which commits, but their answer is
    replaced by a 503, as when a response is lost on the way back. The client sends
    them again: predictions and labels are known by request id, usage samples by the
    sample id the SDK gives each one, so nothing may be stored twice."""

    def __init__(
        self,
        app: ASGIApp,
        fail: int = 0,
        lose_acks: int = 0,
        *,
        down_for: float = 0.0,
        retry_after: str = "0",
    ) -> None:
        self.app = app
        self.fail = fail
        self.down_for = down_for  # seconds of 503s from the first ingest request on
        self.down_until: float | None = None
        self.retry_after = retry_after
        self.unavailable = 0
        self.lose_acks = dict.fromkeys(INGEST, lose_acks)
        self.lost: list[tuple[str, int]] = []  # (path, status the app answered)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in INGEST:
            await self.app(scope, receive, send)
        elif self.fail > 0 or self._down():
            self.fail = max(0, self.fail - 1)
            self.unavailable += 1
            await _unavailable(send, self.retry_after)
        elif self.lose_acks[path] > 0:
            self.lose_acks[path] -= 1

            async def swallow(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.lost.append((path, message["status"]))

            await self.app(scope, receive, swallow)
            await _unavailable(send, self.retry_after)
        else:
            await self.app(scope, receive, send)

    def _down(self) -> bool:
        if self.down_until is None and self.down_for:
            self.down_until = time.monotonic() + self.down_for
        return self.down_until is not None and time.monotonic() < self.down_until


async def _unavailable(send: Send, retry_after: str) -> None:
    headers = [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode())]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    body = b'{"error":"store_unavailable","detail":"injected failure"}'
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(app: ASGIApp, port: int) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def log_event(client: Client, version: str, i: int) -> None:
    e = churn_event(i)
    client.log_prediction(
        "churn",
        version,
        e["request_id"],
        e["features"],
        e["prediction"],
        score=e["score"],
        segment=e["segment"],
        timestamp=e["timestamp"],
    )


def stored(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/v1/models/churn").json()
    return {v["version"]: v for v in body["versions"]} | {"labels": body["labels"]}


def test_every_item_is_stored_exactly_once_through_server_failures(store: Store) -> None:
    # 30 refusals in a row: the client once gave up after 6 attempts.
    flaky = FlakyIngest(create_app(Settings(database_url=store.url), store), fail=30, lose_acks=1)
    with serving(flaky, free_port()) as url:
        assert httpx.post(f"{url}/v1/models", json=CHURN_SPEC).status_code == 201
        for version, alias in [("v1", "champion"), ("v2", "challenger")]:
            created = httpx.post(
                f"{url}/v1/models/churn/versions", json={"version": version, "alias": alias}
            )
            assert created.status_code == 201
        with Client(url, retry=PATIENT, flush_interval=0.05, close_timeout=5) as client:
            for i in range(2500):
                log_event(client, "v1", i)
            for i in range(300):
                log_event(client, "v2", i)
            for i in range(1000):
                client.log_label("churn", f"req-{i}", i % 2)
            for i in range(40):
                with client.measure("churn", "v1", cost=0.001):
                    sum(range(100 * i))
            for _ in range(10):
                client.log_usage("churn", "v2", latency_ms=3.5, memory_mb=120.0, gpu_seconds=0.0)
            assert client.flush(timeout=60)
            stats = client.stats
        counts = stored(url)

    assert flaky.fail == 0 and sorted(flaky.lost) == [(path, 200) for path in sorted(INGEST)]
    assert counts["v1"]["events"]["count"] == 2500
    assert counts["v2"]["events"]["count"] == 300
    assert counts["labels"]["count"] == 1000 and counts["labels"]["unjoined"] == 0
    assert counts["v1"]["labels"]["joined"] == 1000
    assert counts["v2"]["labels"]["joined"] == 300
    assert counts["v1"]["usage"]["count"] == 40
    assert counts["v2"]["usage"]["count"] == 10
    new_rows = 2500 + 300 + 1000 + 50
    assert stats.dropped == 0 and stats.failed_batches == 0 and stats.buffered == 0
    assert stats.sent == new_rows
    assert stats.duplicates > 0  # the batches whose answers were lost were sent again
    assert stats.accepted + stats.duplicates == new_rows
    assert stats.retries >= 30


def test_items_wait_for_a_server_that_is_down_at_first(store: Store) -> None:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", Alias.CHAMPION, "test")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with Client(url, retry=PATIENT, flush_interval=0.05, close_timeout=5) as client:
        for i in range(100):
            log_event(client, "v1", i)
        client.log_usage("churn", "v1", latency_ms=1.0, cpu_seconds=0.01)
        deadline = time.monotonic() + 10
        while client.stats.retries < 2:  # connection refused, retried
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.stats.sent == 0 and client.stats.buffered == 101
        app = create_app(Settings(database_url=store.url), store)
        with serving(app, port):
            assert client.flush(timeout=30)
            counts = stored(url)
            stats = client.stats
    assert counts["v1"]["events"]["count"] == 100
    assert counts["v1"]["usage"]["count"] == 1
    assert stats.dropped == 0 and stats.accepted == 101


def test_an_unknown_model_is_reported_not_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(database_url=store.url), store)
    with serving(app, free_port()) as url, Client(url, retry=PATIENT, close_timeout=5) as client:
        log_event(client, "v1", 1)
        with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
            assert client.flush(timeout=10)
        assert client.stats.dropped == 1 and client.stats.retries == 0
    assert any(
        "HTTP 404 not_found: unknown model 'churn'" in r.getMessage() for r in caplog.records
    )


def churn_server(store: Store) -> None:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", Alias.CHAMPION, "test")


def test_a_422_naming_one_of_100_events_stores_the_other_99(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    churn_server(store)
    app = create_app(Settings(database_url=store.url), store)
    with serving(app, free_port()) as url, Client(url, retry=PATIENT, close_timeout=5) as client:
        for i in range(100):
            e = churn_event(i)
            if i == 37:
                e["features"] = {**e["features"], next(iter(e["features"])): "not a number"}
            client.log_prediction(
                "churn", "v1", e["request_id"], e["features"], e["prediction"], score=e["score"]
            )
        with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
            assert client.flush(timeout=30)
        counts = stored(url)
        assert client.dropped["rejected"] == 1 and client.stats.dropped == 1
        assert client.stats.sent == 99
    assert counts["v1"]["events"]["count"] == 99
    assert any("events[37].features." in r.getMessage() for r in caplog.records)


SPILLING = """
import os, sys
from collector.sdk import Client
from tests.conftest import churn_event

client = Client(sys.argv[1], spill_dir=sys.argv[2], close_timeout=0.5)
for i in range(250):
    e = churn_event(i)
    client.log_prediction("churn", "v1", e["request_id"], e["features"], e["prediction"],
                          score=e["score"], segment=e["segment"], timestamp=e["timestamp"])
client.close()
print(client.stats.spilled, sum(client.dropped.values()), flush=True)
os._exit(0)
"""


def test_a_spill_left_by_a_process_while_the_server_was_down_arrives_exactly_once(
    store: Store, tmp_path: Path
) -> None:
    churn_server(store)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spill = tmp_path / "spill"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SPILLING, url, str(spill)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["250", "0"]
    flaky = FlakyIngest(create_app(Settings(database_url=store.url), store))
    with serving(flaky, port), Client(url, spill_dir=spill, close_timeout=5) as client:
        assert client.flush(timeout=30)
        counts = stored(url)
        stats = client.stats
    assert counts["v1"]["events"]["count"] == 250
    assert stats.restored == stats.sent == stats.accepted == 250 and stats.duplicates == 0
    assert list(spill.glob("*.jsonl")) == []


@pytest.mark.reliability
def test_a_40s_outage_answering_503_retry_after_5_loses_nothing(store: Store) -> None:
    churn_server(store)
    app = create_app(Settings(database_url=store.url), store)
    flaky = FlakyIngest(app, down_for=40.0, retry_after="5")
    with serving(flaky, free_port()) as url, Client(url, close_timeout=5) as client:
        for i in range(143):
            log_event(client, "v1", i)
        assert client.flush(timeout=120)
        counts = stored(url)
        stats = client.stats
    assert flaky.unavailable >= 7  # more than the 6 attempts the client once stopped at
    assert counts["v1"]["events"]["count"] == 143
    assert stats.sent == 143 and stats.dropped == 0
