"""Slack notifier: Block Kit messages through slack-sdk's ``WebClient``, one attempt per send.

The first notification of a group posts a message (``chat.postMessage``) and
returns its channel and ``ts`` as the group's ``thread``. Later notifications
post a reply in that thread and then ``chat.update`` the parent, so its header
shows the current state (firing count, or resolved). If only the parent update
fails the delivery still counts: the reply, the part people read, went out, and
retrying would post it twice.

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
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from alerts.notifiers.base import DeliveryOutcome, Notification, Notifier
from alerts.notifiers.templates import build_blocks, fallback_text
from modelwatch.timeutil import parse_retry_after

__all__ = ["PERMANENT_ERRORS", "TRANSIENT_ERRORS", "SlackNotifier", "outcome_for_error"]

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


def _brief(exc: Exception) -> str:
    outcome = outcome_for_error(exc)
    return outcome.detail.splitlines()[0] if outcome.detail else type(exc).__name__


class SlackNotifier(Notifier):
    """Posts a group's notifications to one channel, updates threaded after the first."""

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

    def send(self, notification: Notification) -> DeliveryOutcome:
        try:
            text, blocks = fallback_text(notification), build_blocks(notification)
            if notification.thread.get("ts"):
                return self._reply(notification.thread, text, blocks)
            return self._post(text, blocks)
        except Exception as exc:  # never raise: report
            return outcome_for_error(exc)

    def _post(self, text: str, blocks: list[dict[str, Any]]) -> DeliveryOutcome:
        response = self._client.chat_postMessage(
            channel=self.channel, text=text, blocks=blocks, unfurl_links=False
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        return DeliveryOutcome(
            ok=True,
            detail=f"posted {ts} in {channel}",
            status_code=_status(response),
            thread={"channel": channel, "ts": ts},
        )

    def _reply(
        self, thread: dict[str, Any], text: str, blocks: list[dict[str, Any]]
    ) -> DeliveryOutcome:
        channel, parent = str(thread.get("channel") or self.channel), str(thread["ts"])
        response = self._client.chat_postMessage(
            channel=channel, thread_ts=parent, text=text, blocks=blocks, unfurl_links=False
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

    def close(self) -> None:
        """``WebClient`` holds no connections (one urllib request per call)."""


def _status(response: SlackResponse) -> int:
    return int(response.status_code)
