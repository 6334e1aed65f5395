"""Backpressure: ingest requests beyond ``MODELWATCH_MAX_INFLIGHT_BATCHES`` are answered
503 at once, before a byte of their body is read, so waiting requests hold no bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.types import Message

from modelwatch.limits import RequestLimits
from modelwatch.settings import Settings

LIMIT = 2
BODY = b'{"events": []}'


def _app(release: asyncio.Event) -> RequestLimits:
    api = FastAPI()

    @api.post("/v1/predictions")
    async def ingest(request: Request) -> dict[str, str]:
        await request.body()
        await release.wait()  # a slow store
        return {"status": "ok"}

    @api.get("/v1/predictions")
    async def listing() -> dict[str, str]:
        return {"status": "ok"}

    return RequestLimits(api, api=api, settings=Settings(max_inflight_batches=LIMIT))


class Call:
    """One request through the middleware; counts the body messages it pulled."""

    def __init__(self, method: str = "POST") -> None:
        self.method = method
        self.pulled = 0
        self.sent: list[Message] = []

    async def __call__(self, app: RequestLimits) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"14")]
        scope: dict[str, Any] = {
            "type": "http",
            "method": self.method,
            "path": "/v1/predictions",
            "root_path": "",
            "query_string": b"",
            "headers": headers if self.method == "POST" else [],
        }
        await app(scope, self.receive, self.send)

    async def receive(self) -> Message:
        self.pulled += 1
        if self.pulled == 1:
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the answer is pending
        raise AssertionError

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def _overloaded() -> None:
    release = asyncio.Event()
    app = _app(release)
    held = [Call() for _ in range(LIMIT)]
    tasks = [asyncio.create_task(call(app)) for call in held]
    while not all(call.pulled for call in held):
        await asyncio.sleep(0.01)
    refused = Call()
    await asyncio.wait_for(refused(app), 5)  # answered at once, not after the others
    assert refused.status == 503 and refused.pulled == 0
    assert refused.headers[b"retry-after"] == b"1"
    assert refused.headers[b"connection"] == b"close"
    assert refused.body["error"] == "overloaded"
    assert f"limit of {LIMIT} ingest requests in flight" in refused.body["detail"]
    reader = Call("GET")  # only ingest batches take a slot
    await asyncio.wait_for(reader(app), 5)
    assert reader.status == 200
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [call.status for call in held] == [200] * LIMIT
    after = Call()  # the slots were given back
    await asyncio.wait_for(after(app), 5)
    assert after.status == 200


def test_ingest_beyond_the_in_flight_limit_is_refused_before_its_body_is_read() -> None:
    asyncio.run(_overloaded())


def test_the_limit_is_a_setting() -> None:
    assert Settings.from_env({"MODELWATCH_MAX_INFLIGHT_BATCHES": "3"}).max_inflight_batches == 3
    assert Settings.from_env({}).max_inflight_batches == Settings.max_inflight_batches
