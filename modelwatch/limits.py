"""Limits before work: every request body is bounded in size and in time, and a caller
without a valid key is refused before its body is read.

:class:`RequestLimits` is pure ASGI middleware in front of every route. It

- answers 413 at once when a declared ``Content-Length`` exceeds the route's limit,
  and cuts a chunked body off (413) the moment it passes it;
- answers 408 when the body has not fully arrived within the route's timeout
  (a client trickling its body, or stalling, holds a connection no longer);
- authenticates callers of routes with typed (pydantic) bodies before the body is
  read, because FastAPI reads and validates such a body before it runs the
  route's dependencies (raw-body routes read their body after their dependencies);
- closes the connection of any response sent before the request body was read, so
  the rest of a refused body is never read either;
- bounds the ingest requests in flight (``MODELWATCH_MAX_INFLIGHT_BATCHES``): a slot
  is taken before the body is read and held until the answer is sent; with every slot
  taken the request is answered 503 (``overloaded``, ``Retry-After: 1``) at once, its
  body unread. Without it each waiting request would hold its whole body in memory,
  so under overload memory grew with clients times batch size.

Limits per route: ingest batches and OTLP take ``MODELWATCH_MAX_BODY_BYTES``,
reference uploads and retrain callbacks ``MODELWATCH_MAX_REFERENCE_BYTES`` (and
the longer ``MODELWATCH_UPLOAD_TIMEOUT_S``), every other route
``MODELWATCH_MAX_JSON_BYTES``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelwatch.domain import Scope as KeyScope
from modelwatch.errors import AuthError, ModelwatchError, OverloadedError, PayloadTooLargeError
from modelwatch.http import ORJSONResponse, error_body, require
from modelwatch.settings import Settings

__all__ = ["BodyRule", "InFlight", "RequestLimits", "RequestTimeoutError", "RouteRules"]

INGEST_PATHS = (
    "/v1/predictions",
    "/v1/ground-truth",
    "/v1/resource-usage",
    "/otlp/v1/metrics",
    "/v1/cloudevents",
)
UPLOAD_PATHS = ("/v1/models/{name}/versions/{version}/reference", "/v1/retrain/callback")
DASH_PATH = "/dash"  # Dash callbacks carry figures' state: the ingest limit, not the JSON one

_REQUIRE = require(KeyScope.READ).__qualname__
OVERLOADED_RETRY_AFTER_S = 1  # a slot frees within one batch's write


class InFlight:
    """At most ``limit`` requests at once, counted on the event loop (no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_take(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def give_back(self) -> None:
        self.count -= 1


class RequestTimeoutError(ModelwatchError):
    """The request body did not arrive within its time limit."""

    status_code = 408
    code = "request_timeout"


@dataclass(frozen=True)
class BodyRule:
    """What one route accepts: at most ``limit`` bytes within ``timeout_s`` seconds;
    ``scope``, when set, is the key scope checked before the body is read."""

    limit: int
    timeout_s: float
    scope: KeyScope | None = None
    slots: InFlight | None = None


class RouteRules:
    """The rule of each route of ``api`` that differs from the default, matched per request
    on its path and method."""

    def __init__(self, api: FastAPI, settings: Settings) -> None:
        self.api = api
        self.default = BodyRule(settings.max_json_bytes, settings.body_timeout_s)
        self.ingest_slots = InFlight(settings.max_inflight_batches)
        ingest = BodyRule(settings.max_body_bytes, settings.body_timeout_s)
        upload = BodyRule(settings.max_reference_bytes, settings.upload_timeout_s)
        slotted = BodyRule(ingest.limit, ingest.timeout_s, slots=self.ingest_slots)
        self.by_path = {
            **dict.fromkeys(INGEST_PATHS, slotted),
            **dict.fromkeys(UPLOAD_PATHS, upload),
            DASH_PATH: ingest,
        }
        self._routes: list[_Entry] | None = None

    def routes(self) -> list[_Entry]:
        if self._routes is None:  # built on first use: routes may be added after the middleware
            entries = (self._entry(context) for context in iter_route_contexts(self.api.routes))
            self._routes = [entry for entry in entries if entry is not None]
        return self._routes

    def rule(self, scope: Scope) -> BodyRule:
        path, method = _route_path(scope), scope["method"]
        for entry in self.routes():
            if entry.pattern.match(path) and (entry.methods is None or method in entry.methods):
                return entry.rule
        return self.default

    def _entry(self, context: RouteContext) -> _Entry | None:
        route = context.original_route
        if isinstance(route, Mount):
            pattern = re.compile(re.escape(route.path) + "(?:/.*)?$")
            rule = self.by_path.get(route.path)
            return None if rule is None else _Entry(pattern, None, rule, route)
        if not isinstance(route, APIRoute):
            return None
        rule = self.by_path.get(route.path, self.default)
        if route.body_field is not None:
            rule = BodyRule(rule.limit, rule.timeout_s, required_scope(route), rule.slots)
        if rule == self.default:
            return None
        return _Entry(compile_path(route.path)[0], frozenset(route.methods or ()), rule, route)


@dataclass(frozen=True)
class _Entry:
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    rule: BodyRule
    route: BaseRoute


def required_scope(route: APIRoute) -> KeyScope | None:
    """The key scope a route's ``modelwatch.http.require`` dependency checks, if any."""
    for call in _dependency_calls(route.dependant.dependencies):
        if getattr(call, "__qualname__", None) == _REQUIRE:
            scope = inspect.getclosurevars(call).nonlocals.get("scope")
            if isinstance(scope, KeyScope):
                return scope
    return None


def _dependency_calls(dependencies: Iterable[Any]) -> Iterable[Any]:
    for dependency in dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency.dependencies)


class RequestLimits:
    """The middleware; ``api`` is the app whose routes carry the rules."""

    def __init__(self, app: ASGIApp, api: FastAPI, settings: Settings) -> None:
        self.app = app
        self.rules = RouteRules(api, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rules.rule(scope)
        declared = _content_length(scope)
        if declared is not None and declared > rule.limit:
            detail = f"request body of {declared} bytes exceeds the limit of {rule.limit}"
            await _refuse(scope, send, PayloadTooLargeError(detail))
            return
        if rule.scope is not None and _has_body(scope, declared):
            try:
                await require(rule.scope)(Request(scope))
            except ModelwatchError as exc:
                await _refuse(scope, send, exc)
                return
        slots = rule.slots if scope["method"] == "POST" else None
        if slots is not None and not slots.try_take():
            detail = f"the service is at its limit of {slots.limit} ingest requests in flight"
            retry = {"retry-after": str(OVERLOADED_RETRY_AFTER_S)}
            await _refuse(
                scope, send, OverloadedError(detail), retry, close=_has_body(scope, declared)
            )
            return
        try:
            guard = _BodyGuard(receive, send, rule, has_body=_has_body(scope, declared))
            await guard.run(self.app, scope)
        finally:
            if slots is not None:
                slots.give_back()


class _Refused(Exception):
    """Raised into the app when its body is refused; the guard answers instead."""


class _BodyGuard:
    """One request: counts and times its body as the app reads it."""

    def __init__(self, receive: Receive, send: Send, rule: BodyRule, *, has_body: bool) -> None:
        self._receive, self._send, self.rule = receive, send, rule
        self.deadline = asyncio.get_running_loop().time() + rule.timeout_s
        self.size = 0
        self.done = not has_body
        self.error: ModelwatchError | None = None
        self.started = False

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            if self.error is None:
                raise
        if self.error is not None and not self.started:
            await _refuse(scope, self._send, self.error)

    async def receive(self) -> Message:
        if self.error is not None:
            raise _Refused
        if self.done:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            self._fail(self._timeout())
        if message["type"] != "http.request":
            self.done = True
            return message
        self.size += len(message.get("body", b""))
        if self.size > self.rule.limit:
            self._fail(PayloadTooLargeError(f"request body exceeds the limit of {self.rule.limit}"))
        if asyncio.get_running_loop().time() > self.deadline:  # a receive that never yields
            self._fail(self._timeout())
        self.done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.error is not None:
            return  # the app's answer to the refused body; the guard sends its own
        if message["type"] == "http.response.start":
            self.started = True
            if not self.done:  # answered before the body was read: never read the rest
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
        await self._send(message)

    def _timeout(self) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"the request body did not arrive within {self.rule.timeout_s:g} s"
        )

    def _fail(self, error: ModelwatchError) -> NoReturn:
        self.error = error
        raise _Refused


_CLOSE = (b"connection", b"close")


async def _refuse(
    scope: Scope,
    send: Send,
    exc: ModelwatchError,
    extra: dict[str, str] | None = None,
    *,
    close: bool = True,
) -> None:
    headers = {"connection": "close"} if close else {}
    headers.update(extra or {})
    if isinstance(exc, AuthError):
        headers["www-authenticate"] = "Bearer"
    response = ORJSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


def _has_body(scope: Scope, declared: int | None) -> bool:
    return bool(declared) or _header(scope, b"transfer-encoding") is not None
