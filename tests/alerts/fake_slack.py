"""A local Slack Web API server for tests: ``chat.postMessage``, ``chat.update``,
``conversations.history`` and ``conversations.replies``.

Point slack-sdk at it with ``WebClient(base_url=fake.base_url)``::

    with FakeSlack(token="xoxb-test", channels={"alerts": "C0ALERTS"}) as slack:
        notifier = SlackNotifier("xoxb-test", "#alerts", base_url=slack.base_url)
        slack.fail_next(1, status=429, retry_after=7)   # the next call is rate-limited
        ...
        assert slack.messages[0].thread_ts is None

It checks ``Authorization: Bearer`` (or a ``token`` form field) against the
known tokens (``invalid_auth`` otherwise), resolves channels by name (``#alerts``
or ``alerts``) or id (``channel_not_found`` otherwise; ``chat.update`` takes ids
only, as Slack does), and accepts JSON or form bodies (``blocks`` as a JSON
string), as slack-sdk sends them, or query parameters (the history methods are
GETs). Message ``metadata`` is kept and returned by the history methods with
``include_all_metadata``, newest first for the channel's top-level messages and
oldest first (parent first) for a thread, paged with ``limit`` and ``cursor``;
they take channel ids only and need ``channels:history``: set ``history_error``
(e.g. ``"missing_scope"``) to refuse them. ``fail_next`` scripts outages: HTTP 429
with ``Retry-After``, 5xx, or a Slack error code with HTTP 200. ``delay`` waits
before handling a call; ``reply_delay`` after handling it, before answering (a
client killed then finds its message posted).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.alerts.receivers import LocalHTTPServer, ReceivedRequest, Reply

__all__ = ["FakeSlack", "SlackCall", "SlackMessage", "SlackUpdate"]

_METHODS = ("chat.postMessage", "chat.update", "conversations.history", "conversations.replies")


@dataclass
class SlackMessage:
    """A posted message, with its current text and blocks (after updates)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class SlackUpdate:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class SlackCall:
    """Every request, answered or failed: method, token, payload and the status given."""

    method: str
    token: str | None
    payload: dict[str, Any]
    status: int
    error: str | None = None


@dataclass
class _Failure:
    remaining: int
    status: int
    error: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    method: str | None = None


class FakeSlack(LocalHTTPServer):
    """Speaks enough of the Slack Web API for the notifier; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        channels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(self._answer)
        self.tokens = {token}
        self.channels = dict(channels or {"alerts": "C0ALERTS"})  # name -> id
        self.messages: list[SlackMessage] = []
        self.updates: list[SlackUpdate] = []
        self.calls: list[SlackCall] = []
        self.delay = 0.0
        self.reply_delay = 0.0
        self.history_error: str | None = None  # e.g. "missing_scope": history refused
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/"

    # -- scripting ------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        error: str | None = None,
        body: str | None = None,
        method: str | None = None,
    ) -> None:
        """Fail the next ``count`` calls (of ``method``, or any) with ``status``.

        429 answers carry ``Retry-After: retry_after`` (default 1). With ``error``
        and status 200 Slack's ``{"ok": false, "error": ...}`` is returned; ``body``
        replaces the JSON body (e.g. an HTML error page).
        """
        headers: dict[str, str] = {}
        if status == 429 or retry_after is not None:
            headers["Retry-After"] = _number(1 if retry_after is None else retry_after)
        default_error = {429: "ratelimited"}.get(status, "internal_error")
        failure = _Failure(count, status, error or default_error, headers, body, method)
        with self._lock:
            self._failures.append(failure)

    def recover(self) -> None:
        """Drop every scripted failure: the outage is over."""
        with self._lock:
            self._failures.clear()

    # -- assertions -----------------------------------------------------------------

    def message(self, ts: str) -> SlackMessage:
        return next(m for m in self.messages if m.ts == ts)

    def top_level(self) -> list[SlackMessage]:
        return [m for m in self.messages if m.thread_ts is None]

    def replies(self, thread_ts: str) -> list[SlackMessage]:
        return [m for m in self.messages if m.thread_ts == thread_ts]

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def deliveries(self) -> list[str]:
        """The delivery key in each posted message's metadata, in posting order."""
        return [
            str((m.metadata or {}).get("event_payload", {}).get("delivery", ""))
            for m in self.messages
        ]

    # -- serving --------------------------------------------------------------------

    def _answer(self, request: ReceivedRequest) -> Reply:
        method = request.path.removeprefix("/api/")
        payload = _payload(request)
        token = _token(request, payload)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            reply = self._scripted(method) or self._dispatch(method, token, payload)
            error = reply.body.get("error") if isinstance(reply.body, dict) else None
            self.calls.append(SlackCall(method, token, payload, reply.status, error))
        if self.reply_delay:
            reply = Reply(reply.status, reply.headers, reply.body, delay=self.reply_delay)
        return reply

    def _scripted(self, method: str) -> Reply | None:
        for failure in self._failures:
            if failure.method in (None, method) and failure.remaining > 0:
                failure.remaining -= 1
                body = failure.body or {"ok": False, "error": failure.error}
                return Reply(failure.status, failure.headers, body)
        return None

    def _dispatch(self, method: str, token: str | None, payload: dict[str, Any]) -> Reply:
        if method not in _METHODS:
            return _error("unknown_method", status=404)
        if token is None:
            return _error("not_authed")
        if token not in self.tokens:
            return _error("invalid_auth")
        if method == "chat.postMessage":
            return self._post(payload)
        if method == "chat.update":
            return self._update(payload)
        if self.history_error:
            return _error(self.history_error)
        return self._history(method, payload)

    def _post(self, payload: dict[str, Any]) -> Reply:
        channel = self._channel_id(str(payload.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        text, blocks = str(payload.get("text", "")), _blocks(payload)
        if not text and not blocks:
            return _error("no_text")
        thread_ts = payload.get("thread_ts") or None
        ts = f"{int(time.time())}.{next(self._seq):06d}"
        message = SlackMessage(channel, ts, text, blocks, thread_ts, metadata=_metadata(payload))
        self.messages.append(message)
        return _ok(channel=channel, ts=ts, message=_as_dict(message))

    def _update(self, payload: dict[str, Any]) -> Reply:
        channel = str(payload.get("channel", ""))
        if channel not in self.channels.values():
            return _error("channel_not_found")
        ts = str(payload.get("ts", ""))
        found = [m for m in self.messages if m.channel == channel and m.ts == ts]
        if not found:
            return _error("message_not_found")
        message = found[0]
        message.text, message.blocks = str(payload.get("text", "")), _blocks(payload)
        message.edits += 1
        self.updates.append(SlackUpdate(channel, ts, message.text, message.blocks))
        return _ok(channel=channel, ts=ts, text=message.text, message=_as_dict(message))

    def _history(self, method: str, payload: dict[str, Any]) -> Reply:
        channel = str(payload.get("channel", ""))
        if channel not in self.channels.values():  # ids only, as Slack does
            return _error("channel_not_found")
        if method == "conversations.history":
            found = [m for m in self.messages if m.channel == channel and m.thread_ts is None]
            found.reverse()  # newest first
        else:
            ts = str(payload.get("ts", ""))
            parents = [m for m in self.messages if m.channel == channel and m.ts == ts]
            if not parents or parents[0].thread_ts is not None:
                return _error("thread_not_found")
            found = [*parents, *(m for m in self.messages if m.thread_ts == ts)]
        return _page(found, payload)

    def _channel_id(self, channel: str) -> str | None:
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel.removeprefix("#"))


def _payload(request: ReceivedRequest) -> dict[str, Any]:
    query: dict[str, Any] = {key: values[-1] for key, values in request.query.items()}
    if request.headers.get("content-type", "").startswith("application/json"):
        body = request.json() if request.body else {}
        return {**query, **body} if isinstance(body, dict) else query
    return {**query, **request.form()}


def _token(request: ReceivedRequest, payload: dict[str, Any]) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ")
    token = payload.pop("token", None)
    return str(token) if token else None


def _blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = payload.get("blocks") or []
    if isinstance(blocks, str):  # form bodies carry blocks as a JSON string
        blocks = json.loads(blocks)
    return list(blocks)


def _metadata(payload: dict[str, Any]) -> dict[str, Any] | None:
    metadata = payload.get("metadata")
    if isinstance(metadata, str):  # form bodies carry it as a JSON string
        metadata = json.loads(metadata) if metadata else None
    return metadata if isinstance(metadata, dict) else None


def _page(messages: list[SlackMessage], payload: dict[str, Any]) -> Reply:
    """One page of ``messages`` in Slack's shape, within ``oldest``/``latest``."""
    inclusive = _flag(payload.get("inclusive"))
    oldest, latest = float(payload.get("oldest") or 0), payload.get("latest")
    within = [
        m
        for m in messages
        if (float(m.ts) >= oldest if inclusive else float(m.ts) > oldest)
        and (latest is None or float(m.ts) < float(latest))
    ]
    start = int(payload.get("cursor") or 0)
    limit = int(payload.get("limit") or 100)
    page, more = within[start : start + limit], start + limit < len(within)
    metadata = _flag(payload.get("include_all_metadata"))
    body: dict[str, Any] = {
        "messages": [_as_dict(m, metadata=metadata) for m in page],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }
    return _ok(**body)


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _as_dict(message: SlackMessage, *, metadata: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
    out["blocks"] = message.blocks
    if message.thread_ts:
        out["thread_ts"] = message.thread_ts
    if metadata and message.metadata:
        out["metadata"] = message.metadata
    return out


def _ok(**fields: Any) -> Reply:
    return Reply(200, body={"ok": True, **fields})


def _error(code: str, *, status: int = 200) -> Reply:
    return Reply(status, body={"ok": False, "error": code})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
