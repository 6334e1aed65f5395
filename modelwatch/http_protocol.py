"""uvicorn's httptools protocol with the two bounds it lacks on a request's head.

uvicorn bounds an idle keep-alive connection but not a request whose line and
headers trickle in: a client that opens connections and sends a header byte every
few seconds holds each one forever (slowloris). Nor does its httptools parser cap
the size of the headers (``h11_max_incomplete_event_size`` applies only to h11).
This protocol answers ``408`` and closes the connection when a request's head has
not fully arrived :data:`HEADER_TIMEOUT_S` after its first byte (or after the
connection opened), and ``431`` when the head grows past :data:`MAX_HEADER_BYTES`.
Bodies are bounded separately, per route, by :mod:`modelwatch.limits`.

The bounds are read from the environment when the module is imported, so the
worker processes of ``serve --workers N`` (spawned, given this class by name) read
the same ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelwatch.settings import Settings

__all__ = ["HEADER_TIMEOUT_S", "MAX_HEADER_BYTES", "GuardedHttpProtocol"]

MAX_HEADER_BYTES = 64 * 1024
HEADER_TIMEOUT_S = Settings.from_env().header_timeout_s  # MODELWATCH_HEADER_TIMEOUT_S

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _refusal(status: int, message: str) -> bytes:
    body = message.encode("ascii")
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses a slow or oversized request head."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_header_bytes: int = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # after a refusal the parser's own complaint is not sent
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._refuse(431, f"request headers larger than {self.max_header_bytes} bytes")
            raise ValueError("request head too large")  # stops the parser on this request

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self._refused:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        in_request = self.cycle is not None and not self.cycle.response_complete
        if not in_request:  # a request being answered is bounded by its route, not here
            self._refuse(408, f"request headers did not arrive within {self.header_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._disarm_head_timer()
        self._unset_keepalive_if_required()
        self.transport.write(_refusal(status, message))
        self.transport.close()
