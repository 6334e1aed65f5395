"""API keys for the Dash app: the same keys and scopes as the REST API.

While no key exists the app is open, as the API is. Once keys exist every request
under ``/dash`` needs a read key, sent as ``Authorization: Bearer <key>`` or as the
password of HTTP Basic auth (browsers ask for it); creating a silence needs an admin
key. The ASGI guard authenticates once per request and hands the principal to the
Flask side in a header it sets itself (any such header from the client is dropped).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import flask
from starlette.concurrency import run_in_threadpool

from modelwatch.auth import KeyStore, Principal
from modelwatch.domain import Scope
from modelwatch.errors import AuthError

__all__ = ["PRINCIPAL_HEADER", "DashAuth", "current_principal"]

PRINCIPAL_HEADER = "x-modelwatch-principal"

ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]


def _token(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class DashAuth:
    """ASGI middleware in front of the mounted Dash app."""

    def __init__(self, app: ASGIApp, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.decode("latin1") != PRINCIPAL_HEADER]
        auth = next((v.decode("latin1") for k, v in headers if k == b"authorization"), "")
        try:
            principal = await run_in_threadpool(self._authenticate, auth)
        except AuthError as exc:
            await _unauthorized(send, str(exc))
            return
        if not principal.allows(Scope.READ):
            await _unauthorized(send, f"API key {principal.name!r} cannot read")
            return
        value = f"{principal.scope.value}:{principal.name}".encode("latin1", "replace")
        scope = {**scope, "headers": [*headers, (PRINCIPAL_HEADER.encode(), value)]}
        await self.app(scope, receive, send)

    def _authenticate(self, header: str) -> Principal:
        if not header:
            return self.keys.principal(None)
        token = _token(header)
        if token is None:
            raise AuthError("send the API key as 'Bearer <key>' or as the Basic auth password")
        return self.keys.principal(token)


async def _unauthorized(send: Send, detail: str) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"www-authenticate", b'Basic realm="modelwatch", charset="UTF-8"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    body = f"{detail}: sign in with an API key as the password (any user name)\n"
    await send({"type": "http.response.body", "body": body.encode()})


def current_principal() -> Principal:
    """Who made the Flask request being handled (set by :class:`DashAuth`)."""
    raw = flask.request.headers.get(PRINCIPAL_HEADER, "")
    scope, _, name = raw.partition(":")
    if scope not in {s.value for s in Scope} or not name:
        return Principal("unknown", Scope.INGEST)  # not behind DashAuth: allow nothing
    return Principal(name, Scope(scope))
