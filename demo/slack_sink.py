"""A local stand-in for Slack's Web API: the demo's alerts, told on the console.

It speaks the methods modelwatch's Slack notifier calls, ``chat.postMessage`` and
``chat.update`` (JSON or form bodies, as slack-sdk sends them), and
``conversations.history`` and ``conversations.replies`` (GET query parameters),
which a redelivery reads to find an earlier attempt's message by its metadata.
It answers as Slack does (``{"ok": true, "channel": ..., "ts": ...}``; history as
``{"ok": true, "messages": [...], "has_more": false}``, newest first, ``metadata``
with ``include_all_metadata``). Every message is kept in memory (tests read
:attr:`SlackSink.messages`) and told through ``say``: its header, then a line per
alert; replies in a thread are indented and edits of a message are noted::

    with SlackSink(say=print) as sink:
        receiver = {"slack": {"token": "xoxb-demo", "channel": "#ml-oncall",
                              "base_url": sink.base_url}}
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl

from demo.serving import ServedInBackground

__all__ = ["SinkMessage", "SlackSink"]

_METHODS = ("chat.postMessage", "chat.update", "conversations.history", "conversations.replies")

_LINK = re.compile(r"<([^|>]*)\|([^>]*)>")
_INDENT, _REPLY = "    ", "  ↳ "


@dataclass
class SinkMessage:
    """A posted message; ``text`` and ``blocks`` are its latest version after edits."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    metadata: dict[str, Any] | None = None

    @property
    def header(self) -> str:
        """The header block's text, or the fallback text."""
        for block in self.blocks:
            if block.get("type") == "header":
                return str(block.get("text", {}).get("text", ""))
        return self.text

    def alert_lines(self) -> list[str]:
        """One line per alert: its title and, where shown, its trend; plain text."""
        out = []
        for block in self.blocks:
            text = block.get("text", {}).get("text", "") if block.get("type") == "section" else ""
            lines = [ln for ln in str(text).splitlines() if ln.strip()]
            if lines:
                trend = next((ln for ln in lines if ln.startswith("*Trend*")), "")
                out.append(_plain(f"{lines[0]}  {trend}" if trend else lines[0]))
        return out

    def full_text(self) -> str:
        """Everything the message says, for searching in tests."""
        return self.text + "\n" + json.dumps(self.blocks, ensure_ascii=False)


class SlackSink(ServedInBackground):
    """A threaded local HTTP server; use as a context manager or ``start``/``stop``."""

    def __init__(
        self,
        *,
        token: str | None = None,
        say: Callable[[str], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token  # None accepts any token
        self.say = say
        self.messages: list[SinkMessage] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        server = _Server((host, port), _Handler)
        server.sink = self
        self._serve(server, "slack-sink")

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/"

    # --- reading -------------------------------------------------------------
    def top_level(self) -> list[SinkMessage]:
        with self._lock:
            return [m for m in self.messages if m.thread_ts is None]

    def replies(self, ts: str) -> list[SinkMessage]:
        with self._lock:
            return [m for m in self.messages if m.thread_ts == ts]

    def message(self, ts: str) -> SinkMessage:
        with self._lock:
            return next(m for m in self.messages if m.ts == ts)

    # --- the API -------------------------------------------------------------
    def call(self, method: str, token: str | None, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one Web API call as Slack would (``ok`` false with an error code)."""
        if method not in _METHODS:
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if self.token is not None and token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if method.startswith("conversations."):
            return self._history(method, payload)
        channel = str(payload.get("channel") or "")
        text, blocks = str(payload.get("text") or ""), _blocks(payload.get("blocks"))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if method == "chat.update":
            return self._update(channel, str(payload.get("ts") or ""), text, blocks)
        thread_ts = str(payload.get("thread_ts") or "") or None
        with self._lock:
            metadata = _metadata(payload.get("metadata"))
            message = SinkMessage(channel, self._ts(), text, blocks, thread_ts, metadata=metadata)
            seen = thread_ts is None or any(m.ts == thread_ts for m in self.messages)
            self.messages.append(message)
        self._tell(message, seen)
        return {"ok": True, "channel": channel, "ts": message.ts}

    def _update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> dict[str, Any]:
        with self._lock:
            found = next((m for m in self.messages if m.ts == ts and m.channel == channel), None)
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            found.text, found.blocks = text, blocks
            found.edits += 1
        self._say(f"[slack {channel}] {_REPLY}message {ts} now reads: {found.header}")
        return {"ok": True, "channel": channel, "ts": ts, "text": text}

    def _history(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages, newest first, or a thread, parent first."""
        channel, parent = str(payload.get("channel") or ""), str(payload.get("ts") or "")
        oldest = float(payload.get("oldest") or 0)
        with self._lock:
            if method == "conversations.history":
                found = [m for m in reversed(self.messages) if m.thread_ts is None]
            else:
                found = [m for m in self.messages if parent in (m.ts, m.thread_ts)]
            found = [m for m in found if m.channel == channel and float(m.ts) > oldest]
        if method == "conversations.replies" and not found:
            return {"ok": False, "error": "thread_not_found"}
        metadata = str(payload.get("include_all_metadata") or "").lower() in ("1", "true")
        limit = int(payload.get("limit") or 100)
        return {
            "ok": True,
            "messages": [_as_dict(m, metadata) for m in found[:limit]],
            "has_more": len(found) > limit,
        }

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    def _tell(self, message: SinkMessage, thread_seen: bool) -> None:
        lead = f"[slack {message.channel}] "
        if message.thread_ts is None:
            self._say(f"{lead}{message.header}")
            indent = _INDENT
        else:
            where = message.thread_ts + (
                "" if thread_seen else ", a message this sink has not seen"
            )
            self._say(f"{lead}{_REPLY}reply in thread {where}: {message.header}")
            indent = _INDENT * 2
        for line in message.alert_lines():
            self._say(f"{indent}{line}")

    def _say(self, line: str) -> None:
        if self.say is not None:
            self.say(line)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: SlackSink


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        payload = _payload(raw, self.headers.get("content-type") or "")
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        payload = {**dict(parse_qsl(query, keep_blank_values=True)), **payload}
        auth = self.headers.get("authorization") or ""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or (str(payload.pop("token")) if payload.get("token") else None)
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        body = json.dumps(cast(_Server, self.server).sink.call(method, token, payload)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST  # the history methods are GETs, their arguments in the query

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sink tells what it received through ``say``."""


def _payload(raw: str, content_type: str) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(raw, keep_blank_values=True))


def _metadata(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):  # form bodies carry it as a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _as_dict(message: SinkMessage, metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
    out["blocks"] = message.blocks
    if message.thread_ts:
        out["thread_ts"] = message.thread_ts
    if metadata and message.metadata:
        out["metadata"] = message.metadata
    return out


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):  # form bodies carry blocks as a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else []


def _plain(mrkdwn: str) -> str:
    """Slack mrkdwn as console text: links become their labels, no bold or code marks."""
    text = _LINK.sub(lambda m: m.group(2), mrkdwn)
    text = text.replace("*", "").replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
