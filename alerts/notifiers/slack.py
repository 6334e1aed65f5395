"""Slack notifier: Block Kit messages through slack-sdk's ``WebClient``, one attempt per send.

The first notification of a group posts a message (``chat.postMessage``) and
returns its channel and ``ts`` as the group's ``thread``. Later notifications
post a reply in that thread and then ``chat.update`` the parent, so its header
shows the current state (firing count, or resolved). If only the parent update
fails the delivery still counts: the reply, the part people read, went out, and
retrying would post it twice.

Slack takes no idempotency key, so each message carries the outbox delivery's key
as message metadata (``event_type`` ``modelwatch_notification``, ``event_payload``
``{"delivery": key}``). A repeat of a delivery that may already have reached Slack
(a worker killed after Slack accepted the post but before the outbox recorded it,
or a timeout) first looks for that key: in the channel's history since the
delivery was written (minus a margin for clocks), or in the thread's replies, with
``include_all_metadata``. Found, the delivery is done and nothing is posted again.
Repeats after attempts Slack itself refused in this process (an error answer, 429,
a refused connection) post without looking. Looking needs the ``channels:history``
scope (``groups:history`` for private channels) and the channel given by ID: when
it cannot be done the notifier warns once and posts anyway (at least once).

slack-sdk's own retry handlers are switched off (``retry_handlers=[]``): the
outbox worker owns retries. Failures are reported, never raised:

* HTTP 429: retry after ``Retry-After``.
* HTTP 5xx, Slack's transient codes, connection errors, timeouts: retry.
* auth, channel and payload errors (``invalid_auth``, ``channel_not_found``,
  ``msg_too_long``, ...) and other 4xx: permanent, with Slack's error code.
"""

from __future__ import annotations

import http.client
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from alerts.notifiers.base import DeliveryOutcome, Notification, Notifier
from alerts.notifiers.templates import build_blocks, fallback_text
from modelwatch.timeutil import parse_retry_after

__all__ = [
    "METADATA_EVENT",
    "PERMANENT_ERRORS",
    "TRANSIENT_ERRORS",
    "SlackNotifier",
    "outcome_for_error",
]

logger = logging.getLogger(__name__)

PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "msg_too_long",
        "msg_blocks_too_long",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "no_text",
        "too_many_attachments",
    }
)
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
METADATA_EVENT = "modelwatch_notification"  # message metadata event_type: the delivery key
HISTORY_LIMIT = 100  # messages per conversations.history / conversations.replies page
HISTORY_PAGES = 3  # pages read, newest first, before posting without having found it
CLOCK_MARGIN = timedelta(minutes=5)  # looked back before the delivery was written
NO_QUEUE_TIME_LOOKBACK = timedelta(days=1)  # when the delivery's time is not known
# Slack's codes for an error that may strike after part of the call was done.
_MAYBE_DONE = TRANSIENT_ERRORS - {"ratelimited", "rate_limited"}
_REMEMBERED = 1000  # deliveries whose refused attempts this notifier remembers
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")  # names are lower case; history takes IDs


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return None


def _api_error(exc: SlackApiError) -> DeliveryOutcome:
    response = exc.response
    status = int(response.status_code)
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or f"HTTP {status}")[:200]
    if status == 429 or code in ("ratelimited", "rate_limited"):
        retry_after = parse_retry_after(_header(response.headers, "retry-after"))
        detail = f"rate limited by Slack ({code}); retry after {retry_after}s"
        return DeliveryOutcome(ok=False, detail=detail, status_code=status, retry_after=retry_after)
    if status >= 500 or status == 408 or code in TRANSIENT_ERRORS:
        return DeliveryOutcome(ok=False, detail=f"Slack unavailable: {code}", status_code=status)
    if code in PERMANENT_ERRORS or 400 <= status < 500:
        return DeliveryOutcome(
            ok=False, detail=f"Slack refused: {code}", status_code=status, permanent=True
        )
    detail = f"Slack error {code} (not known to be permanent; retrying)"
    return DeliveryOutcome(ok=False, detail=detail, status_code=status)


def outcome_for_error(exc: Exception) -> DeliveryOutcome:
    """How a failed Web API call maps onto retry / permanent."""
    if isinstance(exc, SlackApiError):
        return _api_error(exc)
    if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
        return DeliveryOutcome(ok=False, detail=f"timed out: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError | http.client.HTTPException):  # URLError, refused, resets
        return DeliveryOutcome(ok=False, detail=f"connection error: {type(exc).__name__}: {exc}")
    if isinstance(exc, SlackClientError):  # e.g. an invalid base URL
        return DeliveryOutcome(ok=False, detail=f"Slack client error: {exc}", permanent=True)
    logger.exception("slack notifier: unexpected error")
    detail = f"unexpected error: {type(exc).__name__}: {exc}"
    return DeliveryOutcome(ok=False, detail=detail, permanent=True)


def _refused(exc: Exception) -> bool:
    """Slack answered with a refusal (or never took the connection): nothing was posted."""
    if isinstance(exc, SlackApiError):
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        status, code = int(exc.response.status_code), str(data.get("error") or "")
        return status == 429 or (status < 500 and code not in _MAYBE_DONE)
    return isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)


def _delivery_of(message: Any) -> str | None:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return None
    payload = metadata.get("event_payload")
    return str(payload.get("delivery")) if isinstance(payload, dict) else None


def _oldest(queued_at: datetime | None) -> str:
    """``oldest`` for the history calls: Slack ``ts`` seconds before the delivery's time."""
    if queued_at is None:
        since = datetime.now(UTC) - NO_QUEUE_TIME_LOOKBACK
    else:
        since = queued_at if queued_at.tzinfo else queued_at.replace(tzinfo=UTC)
    return f"{(since - CLOCK_MARGIN).timestamp():.6f}"


def _brief(exc: Exception) -> str:
    outcome = outcome_for_error(exc)
    return outcome.detail.splitlines()[0] if outcome.detail else type(exc).__name__


class SlackNotifier(Notifier):
    """Posts a group's notifications to one channel, updates threaded after the first.

    One notifier serves one receiver; it remembers, in this process only, the
    channel's ID from Slack's answers and which attempts Slack refused."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = WebClient.BASE_URL,
        client: WebClient | None = None,
        timeout: float = 10,
    ) -> None:
        self.channel = channel
        self._client = client or WebClient(
            token=token,
            base_url=base_url,
            timeout=timeout,  # type: ignore[arg-type]  # urllib takes float seconds
            retry_handlers=[],
        )
        self._channel_id = channel if _CHANNEL_ID.fullmatch(channel) else None
        self._not_posted: dict[str, int] = {}  # delivery key -> attempts known not posted
        self._warned = False

    def send(self, notification: Notification) -> DeliveryOutcome:
        try:
            text, blocks = fallback_text(notification), build_blocks(notification)
            earlier = self._earlier_post(notification, text, blocks)
            if earlier is not None:
                return earlier
            if notification.thread.get("ts"):
                outcome = self._reply(notification, text, blocks)
            else:
                outcome = self._post(notification, text, blocks)
        except Exception as exc:  # never raise: report
            self._failed(notification, exc)
            return outcome_for_error(exc)
        self._not_posted.pop(notification.idempotency_key, None)
        return outcome

    def _post(self, n: Notification, text: str, blocks: list[dict[str, Any]]) -> DeliveryOutcome:
        response = self._client.chat_postMessage(
            channel=self.channel,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            metadata=_metadata(n),
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        self._channel_id = channel
        return DeliveryOutcome(
            ok=True,
            detail=f"posted {ts} in {channel}",
            status_code=_status(response),
            thread={"channel": channel, "ts": ts},
        )

    def _reply(self, n: Notification, text: str, blocks: list[dict[str, Any]]) -> DeliveryOutcome:
        channel, parent = str(n.thread.get("channel") or self.channel), str(n.thread["ts"])
        response = self._client.chat_postMessage(
            channel=channel,
            thread_ts=parent,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            metadata=_metadata(n),
        )
        updated = self._update(channel, parent, text, blocks)
        detail = f"replied {response['ts']} in thread {parent}; {updated}"
        return DeliveryOutcome(
            ok=True,
            detail=detail,
            status_code=_status(response),
            thread={"channel": channel, "ts": parent},
        )

    def _update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> str:
        try:
            self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except Exception as exc:  # the reply went out: report, don't fail the delivery
            return f"parent message not updated ({_brief(exc)})"
        return "parent message updated"

    # -- repeats ----------------------------------------------------------------------

    def _earlier_post(
        self, n: Notification, text: str, blocks: list[dict[str, Any]]
    ) -> DeliveryOutcome | None:
        """On a repeat that may have reached Slack: the earlier attempt's message, if any."""
        key, known = n.idempotency_key, self._not_posted.get(n.idempotency_key, 0)
        if not key or n.attempt - 1 <= known:
            return None  # a first attempt, or every earlier one was refused here
        parent = str(n.thread.get("ts") or "")
        channel = str(n.thread.get("channel") or "") if parent else ""
        channel = channel or self._channel_id or ""
        if not channel:
            self._warn_once(n, f"channel {self.channel!r} is a name; history takes its ID")
            return None
        try:
            ts = self._find(channel, parent, key, _oldest(n.queued_at))
        except Exception as exc:  # cannot tell: post (at least once)
            self._not_checked(n, exc)
            return None
        if ts is None:
            self._remember(key, n.attempt - 1)
            return None
        return self._found(channel, parent, ts, text, blocks)

    def _find(self, channel: str, parent: str, key: str, oldest: str) -> str | None:
        """The ``ts`` of the message carrying ``key``: in the thread of ``parent``, or
        among the channel's messages since ``oldest``; None if not within a few pages."""
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            page: dict[str, Any] = {
                "channel": channel,
                "include_all_metadata": True,
                "oldest": oldest,
                "limit": HISTORY_LIMIT,
                "cursor": cursor,
            }
            if parent:
                response = self._client.conversations_replies(ts=parent, **page)
            else:
                response = self._client.conversations_history(**page)
            for message in response.get("messages") or []:
                if _delivery_of(message) == key:
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                return None
        return None

    def _found(
        self, channel: str, parent: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> DeliveryOutcome:
        if not parent:
            detail = f"already posted {ts} in {channel} by an earlier attempt; not posted again"
            return DeliveryOutcome(
                ok=True, detail=detail, status_code=200, thread={"channel": channel, "ts": ts}
            )
        updated = self._update(channel, parent, text, blocks)  # the earlier one may not have
        detail = f"already replied {ts} in thread {parent} by an earlier attempt; {updated}"
        return DeliveryOutcome(
            ok=True, detail=detail, status_code=200, thread={"channel": channel, "ts": parent}
        )

    def _failed(self, n: Notification, exc: Exception) -> None:
        """Count an attempt Slack refused, if every one before it is known not posted."""
        key = n.idempotency_key
        if key and _refused(exc) and self._not_posted.get(key, 0) >= n.attempt - 1:
            self._remember(key, n.attempt)

    def _remember(self, key: str, attempts: int) -> None:
        self._not_posted.pop(key, None)
        self._not_posted[key] = attempts
        while len(self._not_posted) > _REMEMBERED:
            del self._not_posted[next(iter(self._not_posted))]

    def _not_checked(self, n: Notification, exc: Exception) -> None:
        outcome = outcome_for_error(exc)
        if outcome.permanent:
            self._warn_once(n, outcome.detail)
        else:
            logger.info(
                "Slack receiver %r: looking for an earlier post of delivery %s failed (%s); "
                "posting it, it may appear twice",
                n.receiver,
                n.idempotency_key,
                outcome.detail,
            )

    def _warn_once(self, n: Notification, why: str) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "Slack receiver %r cannot look for an earlier post before a redelivery (%s), so "
            "a notification redelivered after a worker died mid-send can appear twice. "
            "Give the bot token the channels:history scope (groups:history for a private "
            "channel), invite the bot to the channel and give the channel by ID (C...). "
            "Posting anyway; this is logged once.",
            n.receiver,
            why,
        )

    def close(self) -> None:
        """``WebClient`` holds no connections (one urllib request per call)."""


def _metadata(n: Notification) -> dict[str, Any] | None:
    if not n.idempotency_key:
        return None
    return {"event_type": METADATA_EVENT, "event_payload": {"delivery": n.idempotency_key}}


def _status(response: SlackResponse) -> int:
    return int(response.status_code)
