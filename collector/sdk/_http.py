"""Sending one batch: the request body, retries with backoff, and what the server said.

Items arrive already serialised (JSON bytes, one per event, label or sample);
a batch body is the envelope with the items spliced in. Retries cover 5xx,
408, 429 (honouring ``Retry-After``) and connection errors or timeouts; other
4xx answers are final. A 413 splits the batch in halves; a 422 that names
individual items drops only those and sends the rest once more.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from modelwatch.timeutil import parse_retry_after

__all__ = [
    "LIST_KEYS",
    "BatchKey",
    "RetryPolicy",
    "Sender",
    "Tally",
    "Throttle",
]

logger = logging.getLogger("modelwatch.sdk")

WARN_INTERVAL = 10.0

BatchKey = tuple[str, str, str | None]
"""(endpoint path, model, version); labels have no version."""

LIST_KEYS = {
    "/v1/predictions": "events",
    "/v1/ground-truth": "labels",
    "/v1/resource-usage": "samples",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a batch is given up after ``max_attempts``
    requests or ``max_elapsed`` seconds, whichever comes first."""

    max_attempts: int = 6
    max_elapsed: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 15.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def backoff(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1-based), randomised by ``jitter``."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * (1.0 - self.jitter * random.random())


@dataclass
class Tally:
    """What happened to the items of one batch."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    updated: int = 0
    dropped: int = 0
    failed_batches: int = 0


class Throttle:
    """At most one warning per key every ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float = WARN_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        self._last[key] = now
        quiet = self._quiet.pop(key, 0)
        suffix = f" ({quiet} more like this since the last warning)" if quiet else ""
        logger.warning("modelwatch: " + message + suffix, *args)


def _error_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    return f"{body.get('error', 'error')}: {body.get('detail', '')}"


def _bad_items(response: httpx.Response, list_key: str) -> set[int] | None:
    """Indices of the items a 422 blames, or None when it blames the whole batch."""
    try:
        errors = orjson.loads(response.content).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(errors, list) or not errors:
        return None
    bad: set[int] = set()
    for err in errors:
        loc = err.get("loc") if isinstance(err, dict) else None
        if not isinstance(loc, list) or len(loc) < 2 or loc[0] != list_key:
            return None
        if not isinstance(loc[1], int) or isinstance(loc[1], bool):
            return None
        bad.add(loc[1])
    return bad


class Sender:
    """Posts batches with retries; never raises."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None,
        timeout: float,
        retry: RetryPolicy,
        abort: threading.Event,
        user_agent: str,
    ) -> None:
        self._options: dict[str, Any] = {
            "base_url": url,
            "transport": transport,
            "timeout": timeout,
            "headers": {"content-type": "application/json", "user-agent": user_agent},
        }
        if api_key:
            self._options["headers"]["authorization"] = f"Bearer {api_key}"
        self.retry = retry
        self.abort = abort
        self.on_retry: Callable[[], None] = lambda: None
        self.throttle = Throttle()
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(**self._options)
        return self._http

    def reset(self) -> None:
        """Forget the connection pool (after a fork the parent's sockets are not ours)."""
        self._http = None
        self.abort = threading.Event()
        self.throttle = Throttle()

    def close(self) -> None:
        http, self._http = self._http, None
        try:
            if http is not None:
                http.close()
        except Exception:  # pragma: no cover - closing must not raise
            logger.debug("closing the HTTP client failed", exc_info=True)

    def send(self, key: BatchKey, items: Sequence[bytes], deadline: float | None = None) -> Tally:
        """Deliver ``items`` or give up on them (at the latest at ``deadline``,
        a :func:`time.monotonic` value); the tally says what happened."""
        tally = Tally()
        work: list[Sequence[bytes]] = [items]
        while work:
            chunk = work.pop()
            try:
                self._send_one(key, chunk, tally, work, deadline)
            except Exception:
                logger.exception("modelwatch: unexpected error sending %d items", len(chunk))
                tally.dropped += len(chunk)
                tally.failed_batches += 1
        return tally

    def _body(self, key: BatchKey, items: Sequence[bytes]) -> bytes:
        path, model, version = key
        head = {"model": model}
        if version is not None:
            head["version"] = version
        opening = orjson.dumps(head)[:-1] + b',"' + LIST_KEYS[path].encode() + b'":['
        return opening + b",".join(items) + b"]}"

    def _send_one(
        self,
        key: BatchKey,
        items: Sequence[bytes],
        tally: Tally,
        work: list[Sequence[bytes]],
        stop_at: float | None,
    ) -> None:
        path, model, version = key
        what = f"{len(items)} item(s) for {path} model={model!r}" + (
            f" version={version!r}" if version is not None else ""
        )
        body = self._body(key, items)
        deadline = time.monotonic() + self.retry.max_elapsed
        if stop_at is not None:
            deadline = min(deadline, stop_at)
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self.http.post(path, content=body)
            except httpx.UnsupportedProtocol as exc:
                return self._give_up(tally, len(items), f"{what}: {exc}", key)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._acknowledged(response, len(items), tally)
                problem = f"HTTP {status} {_error_text(response)}"
                if status == 413 and len(items) > 1:
                    half = len(items) // 2
                    work.extend([items[half:], items[:half]])
                    return None
                if status == 422:
                    return self._rejected_items(key, items, response, tally, work, what)
                if status not in (408, 429) and status < 500:
                    return self._give_up(tally, len(items), f"{what} rejected: {problem}", key)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt >= self.retry.max_attempts:
                return self._give_up(
                    tally, len(items), f"{what} failed after {attempt} attempts: {problem}", key
                )
            delay = self.retry.backoff(attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry.max_retry_after))
            if time.monotonic() + delay > deadline:
                return self._give_up(
                    tally,
                    len(items),
                    f"{what} failed, retry budget of {self.retry.max_elapsed}s spent: {problem}",
                    key,
                )
            logger.debug("modelwatch: %s: %s; retrying in %.2fs", what, problem, delay)
            if self.abort.wait(delay):
                return self._give_up(tally, len(items), f"{what} abandoned: {problem}", key)
            self.on_retry()

    @staticmethod
    def _acknowledged(response: httpx.Response, n: int, tally: Tally) -> None:
        tally.sent += n
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}

        def count(name: str, default: int) -> int:
            value = answer.get(name, default)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        tally.accepted += count("accepted", n)
        tally.duplicates += count("duplicates", 0)
        tally.updated += count("updated", 0)

    def _give_up(self, tally: Tally, n: int, message: str, key: BatchKey) -> None:
        """Count ``n`` items as dropped; warn at most every few seconds per batch key."""
        tally.dropped += n
        tally.failed_batches += 1
        self.throttle.warn(f"give-up {key}", "dropped %s", message)

    def _rejected_items(
        self,
        key: BatchKey,
        items: Sequence[bytes],
        response: httpx.Response,
        tally: Tally,
        work: list[Sequence[bytes]],
        what: str,
    ) -> None:
        problem = f"HTTP 422 {_error_text(response)}"
        bad = _bad_items(response, LIST_KEYS[key[0]])
        if bad is None or not bad.issubset(range(len(items))):
            return self._give_up(tally, len(items), f"{what} rejected: {problem}", key)
        self._give_up(tally, len(bad), f"{len(bad)} invalid item(s) of {what}: {problem}", key)
        rest = [item for i, item in enumerate(items) if i not in bad]
        if rest:
            work.append(rest)
        return None
