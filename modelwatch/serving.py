"""How uvicorn runs the API: its connection limits, and a background-thread server
(demo, tests, benchmarks).

Bodies are bounded in size and time by :mod:`modelwatch.limits`; uvicorn bounds the
rest of a connection: an idle keep-alive connection is closed after
:data:`KEEP_ALIVE_S` (longer than the SDK's flush interval, so its batches reuse
their connection; a load balancer in front should idle out sooner). A request's
line and headers must arrive within ``MODELWATCH_HEADER_TIMEOUT_S`` (408 beyond) and
stay under :data:`MAX_HEADER_BYTES` (431 beyond): uvicorn bounds neither, so the
API runs on :class:`modelwatch.http_protocol.GuardedHttpProtocol`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from modelwatch.http_protocol import MAX_HEADER_BYTES

__all__ = ["KEEP_ALIVE_S", "MAX_HEADER_BYTES", "UVICORN_LIMITS", "BackgroundServer"]

KEEP_ALIVE_S = 20
UVICORN_LIMITS: dict[str, Any] = {
    "timeout_keep_alive": KEEP_ALIVE_S,
    "http": "modelwatch.http_protocol:GuardedHttpProtocol",
    "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
}


class BackgroundServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", **UVICORN_LIMITS
        )
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="modelwatch-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the API server could not start on {self.url}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start within {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
