"""Sending one batch once and saying what the answer means for its items.

Items arrive already serialised (JSON bytes, one per event, label or sample);
a batch body is the envelope with the items spliced in. :meth:`Sender.attempt`
never waits or retries itself: the batcher decides when to try again, so that
it can spill, close or give up in the meantime.

- 2xx: delivered.
- 5xx, 429, 408, connection errors and timeouts: the service is unavailable;
  try again later (``Retry-After`` says when, in seconds or as an HTTP date).
- 401/403: the service refuses the API key; held and retried like an outage,
  because a rotated or mistyped key is fixed on the operator's side while the
  items themselves are good.
- 413: split the batch in halves (a single item is dropped as ``too_large``).
- 422 naming items (``loc: ["events", 3, ...]``): only those are rejected; the
  service stored nothing, so the rest is sent again.
- any other 4xx: the whole batch is rejected.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from modelwatch.timeutil import parse_retry_after

__all__ = ["LIST_KEYS", "Answer", "BatchKey", "Outcome", "RetryPolicy", "Sender"]

logger = logging.getLogger("modelwatch.sdk")

BatchKey = tuple[str, str, str | None]
"""(endpoint path, model, version); labels have no version."""

LIST_KEYS = {
    "/v1/predictions": "events",
    "/v1/ground-truth": "labels",
    "/v1/resource-usage": "samples",
}

_RETRY_AFTER_SPREAD = 0.1
_MAX_MESSAGES = 3


@dataclass(frozen=True)
class RetryPolicy:
    """The pause between attempts while the service is unavailable.

    There is no attempt cap: a batch is retried until the service answers or
    has been unavailable for longer than the client's ``max_outage_s``.
    Without ``Retry-After`` the pause grows exponentially from
    ``initial_backoff`` to ``max_backoff``, shortened at random by up to
    ``jitter`` (a fraction). A ``Retry-After`` is honoured (capped at
    ``max_retry_after``, at least ``initial_backoff``) and spread up to 10 %
    later so that many clients do not return at the same instant.
    """

    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        for name in ("initial_backoff", "max_backoff", "multiplier", "max_retry_after"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RetryPolicy.{name} must be positive")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def backoff(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1-based), randomised by ``jitter``."""
        exponent = min(retry - 1, 64)
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**exponent)
        return base * (1.0 - self.jitter * random.random())

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is None:
            return self.backoff(retry)
        wait = max(self.initial_backoff, min(retry_after, self.max_retry_after))
        return wait * (1.0 + _RETRY_AFTER_SPREAD * random.random())


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    SPLIT = "split"
    REJECT_SOME = "reject_some"
    REJECT_ALL = "reject_all"


@dataclass
class Answer:
    """What one attempt means for the batch's items."""

    outcome: Outcome
    problem: str = ""
    accepted: int = 0
    duplicates: int = 0
    updated: int = 0
    bad: frozenset[int] = field(default_factory=frozenset)
    reason: str = "rejected"
    retry_after: float | None = None
    auth: bool = False


class Sender:
    """Posts one batch per :meth:`attempt`; never raises for the network's sake."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None,
        timeout: float,
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
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(**self._options)
        return self._http

    def reset(self) -> None:
        """Forget the connection pool (after a fork the parent's sockets are not ours)."""
        self._http = None

    def close(self) -> None:
        http, self._http = self._http, None
        try:
            if http is not None:
                http.close()
        except Exception:  # pragma: no cover - closing must not raise
            logger.debug("closing the HTTP client failed", exc_info=True)

    def attempt(self, key: BatchKey, items: Sequence[bytes]) -> Answer:
        try:
            response = self.http.post(key[0], content=body(key, items))
        except httpx.UnsupportedProtocol as exc:
            return Answer(Outcome.REJECT_ALL, f"{exc}", reason="error")
        except httpx.TransportError as exc:
            return Answer(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        return classify(response, key, len(items))


def body(key: BatchKey, items: Sequence[bytes]) -> bytes:
    path, model, version = key
    head = {"model": model}
    if version is not None:
        head["version"] = version
    opening = orjson.dumps(head)[:-1] + b',"' + LIST_KEYS[path].encode() + b'":['
    return opening + b",".join(items) + b"]}"


def classify(response: httpx.Response, key: BatchKey, n: int) -> Answer:
    status = response.status_code
    if 200 <= status < 300:
        return _acknowledged(response, n)
    problem = f"HTTP {status} {_error_text(response)}"
    if status >= 500 or status in (408, 429):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Answer(Outcome.RETRY, problem, retry_after=retry_after)
    if status in (401, 403):
        return Answer(Outcome.RETRY, problem, auth=True)
    if status == 413:
        if n > 1:
            return Answer(Outcome.SPLIT, problem)
        return Answer(Outcome.REJECT_ALL, problem, reason="too_large")
    if status == 422:
        bad, messages = _bad_items(response, LIST_KEYS[key[0]])
        if bad is not None and bad and max(bad) < n:
            shown = "; ".join(messages[:_MAX_MESSAGES])
            more = (
                f" (and {len(messages) - _MAX_MESSAGES} more)"
                if len(messages) > _MAX_MESSAGES
                else ""
            )
            return Answer(Outcome.REJECT_SOME, f"HTTP 422 {shown}{more}", bad=frozenset(bad))
    return Answer(Outcome.REJECT_ALL, problem)


def _acknowledged(response: httpx.Response, n: int) -> Answer:
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}

    def count(name: str, default: int) -> int:
        value = answer.get(name, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Answer(
        Outcome.DELIVERED,
        accepted=count("accepted", n),
        duplicates=count("duplicates", 0),
        updated=count("updated", 0),
    )


def _error_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    return f"{body.get('error', 'error')}: {body.get('detail', '')}"


def _bad_items(response: httpx.Response, list_key: str) -> tuple[set[int] | None, list[str]]:
    """Indices of the items a 422 blames and its messages (``events[3].request_id:
    required``); None when it blames the whole batch."""
    try:
        errors = orjson.loads(response.content).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return None, []
    if not isinstance(errors, list) or not errors:
        return None, []
    bad: set[int] = set()
    messages: list[str] = []
    for err in errors:
        loc = err.get("loc") if isinstance(err, dict) else None
        if isinstance(loc, list) and loc[:1] == ["body"]:  # FastAPI's own request checks
            loc = loc[1:]
        if not isinstance(loc, list) or len(loc) < 2 or loc[0] != list_key:
            return None, []
        if not isinstance(loc[1], int) or isinstance(loc[1], bool) or loc[1] < 0:
            return None, []
        bad.add(loc[1])
        messages.append(f"{_path(loc)}: {err.get('msg', 'invalid')}")
    return bad, messages


def _path(loc: Sequence[object]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
