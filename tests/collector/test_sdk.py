"""The Python SDK against scripted servers (httpx.MockTransport): batching, payloads,
the bounded buffer, retries, flush/close and usage measurement."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from collector.sdk import Client, ClientStats, RetryPolicy

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)

Handler = Callable[[httpx.Request, dict[str, Any]], httpx.Response]


def ok(_: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    n = len(next(v for k, v in body.items() if k in ("events", "labels", "samples")))
    return httpx.Response(200, json={"received": n, "accepted": n, "duplicates": 0, "updated": 0})


@dataclass
class Server:
    """A scripted server: records every request, answers with ``handler``."""

    handler: Handler = ok
    requests: list[tuple[float, str, dict[str, Any], httpx.Headers]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        with self.lock:
            self.requests.append((time.monotonic(), request.url.path, body, request.headers))
        return self.handler(request, body)

    def bodies(self, path: str = "/v1/predictions") -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, p, body, _ in self.requests if p == path]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def make_client(server: Server) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("flush_interval", 60.0)
        options.setdefault("retry", FAST)
        client = Client("http://modelwatch.test", transport=httpx.MockTransport(server), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=5)


def predict(client: Client, i: int, version: str = "v1", model: str = "churn") -> bool:
    return client.log_prediction(model, version, f"req-{i}", {"age": i}, i % 2, score=0.5)


def test_batches_are_grouped_by_endpoint_model_and_version(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    for i in range(2500):
        predict(client, i)
    for i in range(10):
        predict(client, i, version="v2")
        predict(client, i, model="fraud")
        client.log_label("churn", f"req-{i}", 1)
    assert client.flush(timeout=5)

    v1 = [b for b in server.bodies() if (b["model"], b["version"]) == ("churn", "v1")]
    assert sorted(len(b["events"]) for b in v1) == [500, 1000, 1000]
    ids = [e["request_id"] for b in v1 for e in b["events"]]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(2500))
    others = [(b["model"], b["version"], len(b["events"])) for b in server.bodies()]
    assert ("churn", "v2", 10) in others and ("fraud", "v1", 10) in others
    assert [len(b["labels"]) for b in server.bodies("/v1/ground-truth")] == [10]
    assert client.stats == ClientStats(sent=2530, accepted=2530)


def test_full_batches_go_out_without_waiting_for_the_interval(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client(batch_size=100)
    for i in range(250):
        predict(client, i)
    deadline = time.monotonic() + 5
    while client.stats.buffered > 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [len(b["events"]) for b in server.bodies()] == [100, 100]
    assert client.stats == ClientStats(sent=200, accepted=200, buffered=50)


def test_the_interval_sends_partial_batches(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client(flush_interval=0.05)
    predict(client, 1)
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(server.bodies()) == 1


def test_payloads_are_exactly_what_the_server_expects(server: Server) -> None:
    when = datetime(2026, 11, 20, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    transport = httpx.MockTransport(server)
    with Client("http://mw.test/base", "mw_abc_secret", transport=transport) as client:
        client.log_prediction(
            "churn",
            "v1",
            "r1",
            {"age": 31.0, "plan": "pro"},
            1,
            score=0.75,
            segment={"country": "DE"},
            timestamp=when,
        )
        client.log_prediction(
            "kind", "v3", "r2", {"x": 1}, "cat", scores={"cat": 0.9, "dog": 0.1}, timestamp=12.5
        )
        client.log_label("churn", "r1", 0, timestamp=datetime(2026, 11, 21, 8, 30))
        client.log_usage(
            "churn", "v1", latency_ms=12.0, cost=0.01, timestamp="2026-11-20T10:00:00Z", tokens=7
        )
    by_path = {(p, b["model"]): (b, h) for _, p, b, h in server.requests}
    assert set(by_path) == {
        ("/base/v1/predictions", "churn"),
        ("/base/v1/predictions", "kind"),
        ("/base/v1/ground-truth", "churn"),
        ("/base/v1/resource-usage", "churn"),
    }
    body, headers = by_path[("/base/v1/predictions", "churn")]
    assert headers["authorization"] == "Bearer mw_abc_secret"
    assert headers["content-type"] == "application/json"
    assert body == {
        "model": "churn",
        "version": "v1",
        "events": [
            {
                "request_id": "r1",
                "timestamp": "2026-11-20T10:00:00Z",
                "features": {"age": 31.0, "plan": "pro"},
                "prediction": 1,
                "score": 0.75,
                "segment": {"country": "DE"},
            }
        ],
    }
    assert by_path[("/base/v1/predictions", "kind")][0]["events"] == [
        {
            "request_id": "r2",
            "timestamp": 12.5,
            "features": {"x": 1},
            "prediction": "cat",
            "scores": {"cat": 0.9, "dog": 0.1},
        }
    ]
    assert by_path[("/base/v1/ground-truth", "churn")][0] == {
        "model": "churn",
        "labels": [{"request_id": "r1", "label": 0, "timestamp": "2026-11-21T08:30:00Z"}],
    }
    usage = by_path[("/base/v1/resource-usage", "churn")][0]
    sample_id = usage["samples"][0].pop("sample_id")
    assert len(sample_id) == 32 and int(sample_id, 16) >= 0  # makes a resent sample idempotent
    assert usage == {
        "model": "churn",
        "version": "v1",
        "samples": [
            {"timestamp": "2026-11-20T10:00:00Z", "latency_ms": 12.0, "cost": 0.01, "tokens": 7}
        ],
    }


def test_default_timestamp_is_now_and_no_key_means_no_auth_header(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    before = time.time()
    client.log_label("churn", "r1", 1)
    assert client.flush(5)
    _, _, body, headers = server.requests[0]
    assert "authorization" not in headers
    assert before <= body["labels"][0]["timestamp"] <= time.time()


def test_items_are_snapshots_of_the_callers_data(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    features: dict[str, object] = {"age": 1}
    client.log_prediction("churn", "v1", "r1", features, 0)
    features["age"] = 99
    assert client.flush(5)
    assert server.bodies()[0]["events"][0]["features"] == {"age": 1}


def test_a_full_buffer_drops_new_items_without_blocking(
    server: Server, make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def hung(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        release.wait(10)
        return ok(request, body)

    server.handler = hung
    client = make_client(batch_size=10, max_buffer_events=100)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        accepted = sum(predict(client, i) for i in range(1000))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert accepted == 100
    assert client.stats.dropped == 900
    assert client.stats.buffered == 100
    assert len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 1
    release.set()
    assert client.flush(5)
    assert client.stats == ClientStats(sent=100, accepted=100, dropped=900)


@pytest.mark.parametrize("status", [400, 404, 409])
def test_client_errors_are_not_retried(
    status: int,
    server: Server,
    make_client: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.handler = lambda _r, _b: httpx.Response(
        status, json={"error": "nope", "detail": "unknown model 'churn'"}
    )
    client = make_client()
    for i in range(5):
        predict(client, i)
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        assert client.flush(5)
    assert len(server.requests) == 1
    assert client.stats == ClientStats(dropped=5, failed_batches=1)
    assert any("unknown model 'churn'" in r.getMessage() for r in caplog.records)


def test_a_validation_error_drops_only_the_items_it_names(
    server: Server, make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    def validate(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        bad = [i for i, e in enumerate(body["events"]) if e["features"]["age"] < 0]
        if not bad:
            return ok(request, body)
        errors = [{"loc": ["events", i, "features", "age"], "msg": "negative"} for i in bad]
        detail = f"events[{bad[0]}].features.age: negative"
        return httpx.Response(
            422, json={"error": "validation_error", "detail": detail, "errors": errors}
        )

    server.handler = validate
    client = make_client()
    for i in range(6):
        client.log_prediction("churn", "v1", f"r{i}", {"age": -1 if i in (1, 4) else i}, 0)
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        assert client.flush(5)
    sent = [[e["request_id"] for e in b["events"]] for b in server.bodies()]
    assert sent == [[f"r{i}" for i in range(6)], ["r0", "r2", "r3", "r5"]]
    assert client.stats == ClientStats(sent=4, accepted=4, dropped=2, failed_batches=1)
    assert any("events[1].features.age: negative" in r.getMessage() for r in caplog.records)


def test_a_validation_error_about_the_envelope_drops_the_batch(
    server: Server, make_client: Callable[..., Client]
) -> None:
    errors = [{"loc": ["version"], "msg": "required, must be a str"}]
    server.handler = lambda _r, _b: httpx.Response(
        422, json={"error": "validation_error", "detail": "version: required", "errors": errors}
    )
    client = make_client()
    for i in range(3):
        predict(client, i)
    assert client.flush(5)
    assert len(server.requests) == 1
    assert client.stats == ClientStats(dropped=3, failed_batches=1)


def failing(times: int, response: Callable[[], httpx.Response]) -> Handler:
    calls = iter(range(1_000_000))

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if next(calls) < times:
            return response()
        return ok(request, body)

    return handler


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_are_retried_until_accepted(
    status: int, server: Server, make_client: Callable[..., Client]
) -> None:
    server.handler = failing(2, lambda: httpx.Response(status, json={"error": "busy"}))
    client = make_client()
    for i in range(3):
        predict(client, i)
    assert client.flush(5)
    bodies = server.bodies()
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert client.stats == ClientStats(sent=3, accepted=3, retries=2)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_connection_errors_and_timeouts_are_retried(
    error: type[httpx.TransportError], server: Server, make_client: Callable[..., Client]
) -> None:
    def boom() -> httpx.Response:
        raise error("no server")

    server.handler = failing(2, boom)
    client = make_client()
    predict(client, 1)
    assert client.flush(5)
    assert len(server.requests) == 3
    assert client.stats == ClientStats(sent=1, accepted=1, retries=2)


def test_retry_after_is_honoured(server: Server, make_client: Callable[..., Client]) -> None:
    server.handler = failing(1, lambda: httpx.Response(429, headers={"Retry-After": "0.3"}))
    client = make_client()
    predict(client, 1)
    assert client.flush(5)
    (first, *_), (second, *_) = server.requests
    assert second - first >= 0.3
    assert client.stats.retries == 1 and client.stats.sent == 1


def test_too_large_batches_are_split(server: Server, make_client: Callable[..., Client]) -> None:
    def small_bodies(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if len(body["events"]) > 3:
            return httpx.Response(413, json={"error": "payload_too_large"})
        return ok(request, body)

    server.handler = small_bodies
    client = make_client()
    for i in range(10):
        predict(client, i)
    assert client.flush(5)
    accepted = [b for b in server.bodies() if len(b["events"]) <= 3]
    delivered = [e["request_id"] for b in accepted for e in b["events"]]
    assert sorted(delivered) == sorted(f"req-{i}" for i in range(10))
    assert client.stats == ClientStats(sent=10, accepted=10)


def test_batches_respect_max_batch_bytes(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client(max_batch_bytes=1000)
    for i in range(20):
        client.log_prediction("churn", "v1", f"r{i}", {"note": "x" * 200}, 0, timestamp=1.0)
    assert client.flush(5)
    sizes = [len(b["events"]) for b in server.bodies()]
    assert sum(sizes) == 20 and max(sizes) <= 4 and len(sizes) >= 5


def test_the_sender_thread_survives_unexpected_errors(
    server: Server, make_client: Callable[..., Client]
) -> None:
    def crash() -> httpx.Response:
        raise RuntimeError("bug in a custom transport")

    server.handler = failing(1, crash)
    client = make_client()
    predict(client, 1)
    assert client.flush(5)
    predict(client, 2)
    assert client.flush(5)
    assert client.stats == ClientStats(sent=1, accepted=1, dropped=1, failed_batches=1)


def test_invalid_input_is_dropped_not_raised(make_client: Callable[..., Client]) -> None:
    client = make_client()
    assert not client.log_prediction("churn", "v1", "r1", {"f": object()}, 0)
    assert not client.log_prediction("churn", "v1", "r1", {}, 0, timestamp=[1])  # type: ignore[arg-type]
    assert not client.log_label(7, "r1", 0)  # type: ignore[arg-type]
    assert not client.log_usage("churn", "v1")
    assert client.stats == ClientStats(dropped=4)


def test_flush_times_out_while_the_server_hangs_then_completes(
    server: Server, make_client: Callable[..., Client]
) -> None:
    release = threading.Event()

    def hung(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        release.wait(10)
        return ok(request, body)

    server.handler = hung
    client = make_client()
    predict(client, 1)
    assert client.flush(timeout=0.05) is False
    predict(client, 2)
    release.set()
    assert client.flush(timeout=5) is True
    assert client.stats.sent == 2 and client.stats.buffered == 0


def test_without_a_thread_flush_sends_inline(
    server: Server, make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoThreads(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr("collector.sdk._batcher.threading.Thread", NoThreads)
    client = make_client()
    assert predict(client, 1) and predict(client, 2)
    assert client.flush(5)
    assert [len(b["events"]) for b in server.bodies()] == [2]
    assert client.close() is True


def test_flush_with_nothing_buffered_returns_at_once(make_client: Callable[..., Client]) -> None:
    client = make_client()
    started = time.monotonic()
    assert client.flush()
    assert time.monotonic() - started < 0.1


def test_close_flushes_then_refuses_new_items_and_can_be_repeated(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    for i in range(3):
        predict(client, i)
    assert client.close() is True
    assert len(server.bodies()) == 1
    assert predict(client, 99) is False
    assert client.close() is True
    assert client.stats == ClientStats(sent=3, accepted=3, dropped=1)


def test_close_with_a_timeout_abandons_retries(
    server: Server, make_client: Callable[..., Client]
) -> None:
    server.handler = lambda _r, _b: httpx.Response(503)
    client = make_client(retry=RetryPolicy(initial_backoff=0.05))
    for i in range(3):
        predict(client, i)
    started = time.monotonic()
    assert client.close(timeout=0.2) is False
    assert time.monotonic() - started < 2.0
    assert client.stats.dropped == 3 and client.stats.buffered == 0


def test_context_manager_flushes_on_exit(server: Server) -> None:
    with Client("http://mw.test", transport=httpx.MockTransport(server), flush_interval=60) as c:
        predict(c, 1)
    assert len(server.bodies()) == 1


def test_measure_logs_latency_and_cpu_even_when_the_call_raises(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    with client.measure("churn", "v1", cost=0.5) as m:
        time.sleep(0.02)
        m.fields["tokens"] = 3
    with pytest.raises(ZeroDivisionError), client.measure("churn", "v1"):
        _ = 1 / 0
    assert client.flush(5)
    samples = server.bodies("/v1/resource-usage")[0]["samples"]
    assert len(samples) == 2
    assert samples[0]["latency_ms"] >= 20 and samples[0]["cpu_seconds"] >= 0
    assert samples[0]["cost"] == 0.5 and samples[0]["tokens"] == 3
    assert m.latency_ms == samples[0]["latency_ms"]
    assert {"timestamp", "latency_ms", "cpu_seconds", "sample_id"} == set(samples[1])


def test_measured_decorates_sync_and_async_functions(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()

    @client.measured("churn", "v2")
    def predict_one(x: int) -> int:
        """Doubles."""
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    @client.measured("churn", "v2")
    async def predict_async(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    assert predict_one(4) == 8
    assert predict_one.__name__ == "predict_one" and predict_one.__doc__ == "Doubles."
    with pytest.raises(ValueError, match="negative"):
        predict_one(-1)
    assert asyncio.run(predict_async(1)) == 2
    assert client.flush(5)
    samples = [s for b in server.bodies("/v1/resource-usage") for s in b["samples"]]
    assert len(samples) == 3
    assert samples[2]["latency_ms"] >= 10
    assert {b["version"] for b in server.bodies("/v1/resource-usage")} == {"v2"}


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Client("http://mw.test", batch_size=0)


EXIT_SCRIPT = """
import sys
import httpx
from collector.sdk import Client

def handler(request):
    print("POST", request.url.path, request.content.decode(), flush=True)
    return httpx.Response(200, json={"received": 1, "accepted": 1, "duplicates": 0, "updated": 0})

client = Client("http://mw.test", transport=httpx.MockTransport(handler), flush_interval=60)
client.log_prediction("churn", "v1", "r1", {"age": 1}, 0)
if sys.argv[1] == "close":
    client.close()
"""


@pytest.mark.parametrize("how", ["exit", "close"])
def test_buffered_items_are_sent_at_interpreter_exit(how: str) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, how],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    posts = [line for line in done.stdout.splitlines() if line.startswith("POST")]
    assert len(posts) == 1 and '"request_id":"r1"' in posts[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_items(
    server: Server, make_client: Callable[..., Client]
) -> None:
    client = make_client()
    predict(client, 1)
    assert client.flush(5)
    predict(client, 2)  # the parent's, still buffered at the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            predict(client, 3)
            if client.flush(5) and client.stats.sent == 1:
                last = server.bodies()[-1]["events"]
                code = 0 if [e["request_id"] for e in last] == ["req-3"] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.flush(5)
    assert [e["request_id"] for b in server.bodies() for e in b["events"]] == ["req-1", "req-2"]
