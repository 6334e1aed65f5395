"""Generic webhook notifier: Alertmanager's webhook payload (version 4) over HTTP POST.

Receivers built for Alertmanager (PagerDuty and Opsgenie bridges, chat relays,
custom handlers) accept it unchanged. One POST per :meth:`WebhookNotifier.send`;
each carries the outbox delivery's key as ``webhook-id`` (as the signed pipeline
webhooks do), the same on every retry, so a receiver can drop a repeat: a worker
that dies after the receiver answered but before it recorded the answer sends
the delivery again. The outcome says whether and when to retry:

* 2xx: delivered.
* 408, 429, 5xx, connection errors and timeouts: retry, after ``Retry-After``
  (delta seconds or an HTTP date) when the receiver sent one.
* 3xx and other 4xx: permanent (the URL, credentials or payload are wrong).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from alerts.notifiers.base import Alert, DeliveryOutcome, Notification, Notifier
from modelwatch.timeutil import parse_retry_after, rfc3339

__all__ = ["ZERO_TIME", "WebhookNotifier", "alertmanager_payload"]

logger = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's endsAt for firing alerts
USER_AGENT = "modelwatch-webhook/1"
HEADER_ID = "webhook-id"
_RETRY_STATUSES = frozenset({408, 429})
_SNIPPET = 200


def _alert_payload(alert: Alert) -> dict[str, Any]:
    ends_at = alert.ends_at if alert.status == "resolved" else None
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(ends_at) if ends_at else ZERO_TIME,
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def alertmanager_payload(n: Notification, *, max_alerts: int = 0) -> dict[str, Any]:
    """The Alertmanager webhook v4 body; ``max_alerts`` > 0 truncates the alert list."""
    alerts = n.alerts[:max_alerts] if max_alerts > 0 else n.alerts
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated_alerts + len(n.alerts) - len(alerts),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "alerts": [_alert_payload(a) for a in alerts],
    }


def outcome_for_response(response: httpx.Response) -> DeliveryOutcome:
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryOutcome(ok=True, detail=f"HTTP {status}", status_code=status)
    detail = f"HTTP {status}: {_snippet(response)}"
    if status in _RETRY_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return DeliveryOutcome(ok=False, detail=detail, status_code=status, retry_after=retry_after)
    if 300 <= status < 400:
        detail = f"HTTP {status}: redirected to {response.headers.get('Location', '?')}"
    return DeliveryOutcome(ok=False, detail=detail, status_code=status, permanent=True)


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:_SNIPPET] + "…" if len(text) > _SNIPPET else text) or response.reason_phrase


def outcome_for_error(exc: Exception) -> DeliveryOutcome:
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return DeliveryOutcome(ok=False, detail=f"bad webhook URL: {exc}", permanent=True)
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryOutcome(ok=False, detail=f"timed out: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):
        return DeliveryOutcome(ok=False, detail=f"connection error: {type(exc).__name__}: {exc}")
    logger.exception("webhook notifier: unexpected error")
    return DeliveryOutcome(
        ok=False, detail=f"unexpected error: {type(exc).__name__}: {exc}", permanent=True
    )


class WebhookNotifier(Notifier):
    """POSTs Alertmanager webhook v4 JSON to ``url``; one attempt per :meth:`send`."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10,
        max_alerts: int = 0,
    ) -> None:
        self.url = url
        self.max_alerts = max_alerts
        base_headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        self._client = httpx.Client(
            headers={**base_headers, **(headers or {})},
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
        )

    def send(self, notification: Notification) -> DeliveryOutcome:
        try:
            body = json.dumps(alertmanager_payload(notification, max_alerts=self.max_alerts))
            key = notification.idempotency_key
            headers = {HEADER_ID: key} if key else None
            response = self._client.post(self.url, content=body.encode(), headers=headers)
        except Exception as exc:  # never raise: report
            return outcome_for_error(exc)
        return outcome_for_response(response)

    def close(self) -> None:
        self._client.close()
