"""The SDK while the service is unavailable: Retry-After and backoff with no attempt
cap, the outage limit, the bounded buffer, drops by reason, 401/403, 413 and 422.

Time runs 20 times faster than the wall clock (WarpClock), so a 40 s outage
with ``Retry-After: 5`` takes two seconds. Waits may overrun under load, so the
tests bound pauses from below strictly and from above loosely."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import orjson
import pytest

from collector.sdk import DROP_REASONS, Client, ClientStats, RetryPolicy

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)
LIST_KEYS = ("events", "labels", "samples")


class WarpClock:
    """Monotonic time passing ``speed`` times faster than the wall clock."""

    def __init__(self, speed: float = 20.0) -> None:
        self.speed = speed
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.speed

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(None if timeout is None else timeout / self.speed)


Reply = Callable[[float, dict[str, Any]], httpx.Response]


def ok(_: float, body: dict[str, Any]) -> httpx.Response:
    n = len(next(v for k, v in body.items() if k in LIST_KEYS))
    return httpx.Response(200, json={"received": n, "accepted": n, "duplicates": 0, "updated": 0})


@dataclass
class Server:
    """A scripted server on the warped clock: records (time, status, body) per request."""

    clock: WarpClock
    reply: Reply = ok
    requests: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = self.clock.now()
        body = orjson.loads(request.content)
        response = self.reply(now, body)
        with self.lock:
            self.requests.append((now, response.status_code, body))
        return response

    def times(self) -> list[float]:
        return [t for t, _, _ in self.requests]

    def delivered(self, key: str = "events") -> list[str]:
        """Request ids (or sample ids) of the items in batches answered 2xx."""
        out = []
        for _, status, body in self.requests:
            if key in body and 200 <= status < 300:
                out += [i.get("request_id") or i.get("sample_id") for i in body[key]]
        return out


def down_until(end: float, status: int = 503, retry_after: str | None = "5") -> Reply:
    def reply(now: float, body: dict[str, Any]) -> httpx.Response:
        if now < end:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return httpx.Response(status, json={"error": "store_unavailable"}, headers=headers)
        return ok(now, body)

    return reply


@pytest.fixture
def clock() -> WarpClock:
    return WarpClock()


@pytest.fixture
def server(clock: WarpClock) -> Server:
    return Server(clock)


@pytest.fixture
def make_client(server: Server, clock: WarpClock) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("flush_interval", 60.0)
        client = Client(
            "http://mw.test", transport=httpx.MockTransport(server), clock=clock, **options
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=5)


def predict(client: Client, i: int, pad: str = "") -> bool:
    features = {"age": i, "note": pad} if pad else {"age": i}
    return client.log_prediction("churn", "v1", f"req-{i}", features, 0, timestamp=1.0)


def no_drops(client: Client) -> bool:
    return client.dropped == dict.fromkeys(DROP_REASONS, 0)


def test_a_40s_outage_with_retry_after_5_loses_nothing(
    server: Server, make_client: Callable[..., Client]
) -> None:
    server.reply = down_until(40.0)
    client = make_client()
    for i in range(143):
        predict(client, i)
    assert client.flush(timeout=120)
    assert sorted(server.delivered()) == sorted(f"req-{i}" for i in range(143))
    times = server.times()
    assert len(times) > 6  # the old client gave up after 6 attempts
    assert times[-1] - times[0] >= 40.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 5.0  # Retry-After, spread up to 10 % later
    assert sorted(gaps)[len(gaps) // 2] < 5.5 + 1.0
    assert client.stats == ClientStats(sent=143, accepted=143, retries=len(times) - 1)
    assert no_drops(client)


def test_retry_after_as_an_http_date_is_honoured(
    server: Server, make_client: Callable[..., Client]
) -> None:
    # The date is on the wall clock, which runs slower: 3 s ahead stays 3 s here.
    date = formatdate(time.time() + 3, usegmt=True)
    server.reply = lambda t, body: (
        ok(t, body) if server.requests else httpx.Response(429, headers={"Retry-After": date})
    )
    client = make_client()
    predict(client, 1)
    assert client.flush(timeout=60)
    first, second = server.times()
    assert second - first >= 2.0  # the date has whole seconds


def test_other_failures_back_off_exponentially_with_jitter(
    server: Server, make_client: Callable[..., Client]
) -> None:
    server.reply = down_until(16.0, status=500, retry_after=None)
    retry = RetryPolicy(initial_backoff=1.0, multiplier=2.0, max_backoff=8.0, jitter=0.5)
    client = make_client(retry=retry)
    predict(client, 1)
    assert client.flush(timeout=120)
    times = server.times()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for retry_no, gap in enumerate(gaps[:4], start=1):
        base = min(8.0, 2.0 ** (retry_no - 1))
        assert base * 0.5 <= gap <= base + 2.0, (retry_no, gaps)
    assert len(set(round(g, 3) for g in gaps)) > 1
    assert no_drops(client)


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.5, max_retry_after=60)
    for _ in range(200):
        assert 0.25 <= policy.delay(1, None) <= 0.5
        assert 2.0 <= policy.delay(30, None) <= 4.0
        assert 5.0 <= policy.delay(1, 5.0) <= 5.5
        assert 60.0 <= policy.delay(1, 3600.0) <= 66.0
        assert 0.5 <= policy.delay(1, 0.0) <= 0.55
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_connection_errors_are_retried_without_an_attempt_cap(
    error: type[httpx.TransportError], server: Server, clock: WarpClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 50:
            raise error("no server")
        return server(request)

    with Client(
        "http://mw.test", transport=httpx.MockTransport(handler), retry=FAST, clock=clock
    ) as client:
        predict(client, 1)
        assert client.flush(timeout=60)
        assert client.stats == ClientStats(sent=1, accepted=1, retries=50)


def test_an_outage_longer_than_max_outage_drops_and_says_why(
    server: Server, make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    server.reply = down_until(1e9)
    client = make_client(max_outage_s=30)
    with caplog.at_level(logging.INFO, logger="modelwatch.sdk"):
        for i in range(20):
            predict(client, i)
        assert client.flush(timeout=120)
    assert client.dropped["outage_exceeded"] == 20 and client.stats.dropped == 20
    times = server.times()
    assert times[-1] - times[0] > 30 and len(times) <= 9
    assert server.delivered() == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the service is unavailable (HTTP 503" in m for m in messages) == 1
    assert any("longer than max_outage_s=30" in m and "20 item(s)" in m for m in messages)


def test_any_answer_restarts_the_outage_clock(
    server: Server, make_client: Callable[..., Client], clock: WarpClock
) -> None:
    state = {"down_until": 25.0}

    def reply(now: float, body: dict[str, Any]) -> httpx.Response:
        if now < state["down_until"]:
            return httpx.Response(503, headers={"Retry-After": "5"})
        return ok(now, body)

    server.reply = reply
    client = make_client(max_outage_s=30)
    predict(client, 1)
    assert client.flush(timeout=120)
    state["down_until"] = clock.now() + 25.0  # a second outage: 50 s in all, 25 s each
    predict(client, 2)
    assert client.flush(timeout=120)
    assert sorted(server.delivered()) == ["req-1", "req-2"] and no_drops(client)


def test_401_and_403_are_held_and_logged_as_errors_until_the_key_works(
    server: Server, make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    server.reply = down_until(40.0, status=401, retry_after=None)
    client = make_client(retry=RetryPolicy(initial_backoff=1, max_backoff=4))
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        for i in range(5):
            predict(client, i)
        assert client.flush(timeout=120)
    assert len(server.delivered()) == 5 and no_drops(client)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refuses this client's API key (HTTP 401" in errors[0].getMessage()


def test_a_key_refused_for_longer_than_max_outage_is_dropped_as_auth(
    server: Server, make_client: Callable[..., Client]
) -> None:
    server.reply = down_until(1e9, status=403, retry_after=None)
    client = make_client(max_outage_s=20, retry=RetryPolicy(initial_backoff=1, max_backoff=4))
    for i in range(3):
        predict(client, i)
    assert client.flush(timeout=120)
    assert client.dropped["auth"] == 3 and client.stats.dropped == 3


def test_the_buffer_is_bounded_in_bytes_without_blocking(
    server: Server, make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    server.reply = down_until(1e9)
    client = make_client(max_buffer_bytes=2000)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        accepted = sum(predict(client, i, pad="x" * 300) for i in range(1000))
    assert time.perf_counter() - started < 1.0
    assert 4 <= accepted <= 6  # each item is about 350 bytes
    assert client.dropped["buffer_full"] == 1000 - accepted
    assert client.stats.buffered == accepted
    assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1


def test_held_back_warnings_are_summed_up_later(
    server: Server,
    make_client: Callable[..., Client],
    clock: WarpClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.reply = down_until(1e9)
    client = make_client(max_buffer_events=10, flush_interval=1.0)
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        for i in range(510):
            predict(client, i)
        deadline = clock.now() + 30
        while clock.now() < deadline and not any(
            "499 more like this" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.01)
    full = [r.getMessage() for r in caplog.records if "buffer" in r.getMessage()]
    assert len(full) == 2, full
    assert "buffer full" in full[0] and "buffer_full: 499 more like this" in full[1]


@pytest.mark.parametrize(
    ("log", "key"),
    [
        (lambda c, i, bad: c.log_label("churn", f"r{i}", "?" if bad else 1), "labels"),
        (
            lambda c, i, bad: c.log_usage("churn", "v1", latency_ms=-1.0 if bad else 1.0),
            "samples",
        ),
        (lambda c, i, bad: c.log_prediction("churn", "v1", f"r{i}", {"a": -bad}, 0), "events"),
    ],
)
def test_a_422_rejects_only_the_items_it_names_for_every_kind(
    log: Callable[[Client, int, bool], bool],
    key: str,
    server: Server,
    make_client: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def is_bad(item: dict[str, Any]) -> bool:
        return (
            item.get("label") == "?"
            or item.get("latency_ms", 0) < 0
            or item.get("features", {}).get("a", 0) < 0
        )

    def validate(now: float, body: dict[str, Any]) -> httpx.Response:
        errors = [
            {"loc": [key, i, "x"], "msg": "must be valid", "input": None}
            for i, item in enumerate(body[key])
            if is_bad(item)
        ]
        if errors:
            return httpx.Response(422, json={"error": "validation_error", "errors": errors})
        return ok(now, body)

    server.reply = validate
    client = make_client()
    for i in range(10):
        log(client, i, i in (2, 7))
    with caplog.at_level(logging.WARNING, logger="modelwatch.sdk"):
        assert client.flush(timeout=60)
    assert len(server.delivered(key)) == 8
    assert client.dropped["rejected"] == 2 and client.stats.dropped == 2
    assert any(f"{key}[2].x: must be valid; {key}[7].x" in r.getMessage() for r in caplog.records)


def test_a_422_about_the_envelope_or_an_unknown_index_rejects_the_batch(
    server: Server, make_client: Callable[..., Client]
) -> None:
    errors = [{"loc": ["events", 99, "x"], "msg": "?"}]
    server.reply = lambda _t, _b: httpx.Response(422, json={"errors": errors})
    client = make_client()
    for i in range(3):
        predict(client, i)
    assert client.flush(timeout=60)
    assert len(server.requests) == 1 and client.dropped["rejected"] == 3


def test_a_single_item_too_large_is_dropped_as_too_large(
    server: Server, make_client: Callable[..., Client]
) -> None:
    def small(now: float, body: dict[str, Any]) -> httpx.Response:
        if any(len(e["features"].get("note", "")) > 100 for e in body["events"]):
            if len(body["events"]) == 1:
                return httpx.Response(413, json={"error": "payload_too_large"})
            return httpx.Response(413)
        return ok(now, body)

    server.reply = small
    client = make_client()
    for i in range(8):
        predict(client, i, pad="x" * (500 if i == 5 else 1))
    assert client.flush(timeout=60)
    assert sorted(server.delivered()) == sorted(f"req-{i}" for i in range(8) if i != 5)
    assert client.dropped["too_large"] == 1 and client.stats.dropped == 1


def test_close_without_a_spill_counts_the_rest_as_close_timeout(
    server: Server, make_client: Callable[..., Client]
) -> None:
    server.reply = down_until(1e9)
    client = make_client()
    for i in range(3):
        predict(client, i)
    started = time.monotonic()
    assert client.close(timeout=20) is False  # 0.2 s of wall time
    assert time.monotonic() - started < 2.0
    assert client.dropped["close_timeout"] == 3 and client.stats.buffered == 0
    assert not predict(client, 4) and client.dropped["closed"] == 1
