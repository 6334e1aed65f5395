"""Local HTTP servers for tests: a scriptable webhook receiver and the plumbing under it.

:class:`LocalHTTPServer` runs a handler (``ReceivedRequest -> Reply``) on
``127.0.0.1`` in a background thread. :class:`WebhookReceiver` records every
request and answers from a script of replies (then a default), e.g.::

    with WebhookReceiver([Reply(503, {"Retry-After": "2"}), Reply(200)]) as hook:
        notifier = WebhookNotifier(hook.url)
        ...
        assert hook.requests[0].json()["version"] == "4"

Stopping a receiver (``hook.stop()``) closes its port, so later requests get
"connection refused".
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["LocalHTTPServer", "ReceivedRequest", "Reply", "WebhookReceiver"]


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` fields (last value wins)."""
        pairs = parse_qs(self.body.decode(), keep_blank_values=True)
        return {key: values[-1] for key, values in pairs.items()}


@dataclass(frozen=True)
class Reply:
    """What to answer: status, headers, body (bytes, text, or JSON-able), after ``delay`` s."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | dict[str, Any] | list[Any] = b""
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return json.dumps(self.body).encode(), headers


Handler = Callable[[ReceivedRequest], Reply]


def _handler_class(handle: Handler) -> type[BaseHTTPRequestHandler]:
    class _RequestHandler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            request = ReceivedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            reply = handle(request)
            if reply.delay:
                time.sleep(reply.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._respond(reply)  # unless the client gave up (e.g. a timeout under test)

        def _respond(self, reply: Reply) -> None:
            body, headers = reply.encoded()
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return _RequestHandler


class LocalHTTPServer:
    """A threaded HTTP server on an ephemeral port of 127.0.0.1, calling ``handle``."""

    def __init__(self, handle: Handler) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(handle))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.port: int = self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port (later connections are refused)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebhookReceiver(LocalHTTPServer):
    """Records requests; answers with scripted replies in order, then ``default``."""

    def __init__(self, replies: Iterable[Reply] = (), *, default: Reply | None = None) -> None:
        super().__init__(self._answer)
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque(replies)
        self._default = default or Reply(200, body={"status": "ok"})
        self._arrived = threading.Condition(self._lock)
        self.requests: list[ReceivedRequest] = []

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"

    def script(self, *replies: Reply) -> None:
        """Queue more replies (answered in order before the default)."""
        with self._lock:
            self._script.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until ``count`` requests arrived (for senders on other threads)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests in {timeout}s")
            return list(self.requests)

    def _answer(self, request: ReceivedRequest) -> Reply:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            return self._script.popleft() if self._script else self._default
