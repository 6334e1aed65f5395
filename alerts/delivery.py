"""Delivering notifications from the outbox through each receiver's notifier."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from alerts.dispatch import notification_from_json
from alerts.notifiers.base import Notifier
from modelwatch.outbox import Delivery, DeliveryOutcome
from modelwatch.policies import ReceiverSpec
from modelwatch.store.alerts import AlertStore

__all__ = ["NotificationHandler", "build_notifiers"]

log = logging.getLogger(__name__)


def build_notifiers(receivers: list[ReceiverSpec]) -> dict[str, Notifier]:
    from alerts.notifiers.slack import SlackNotifier
    from alerts.notifiers.webhook import WebhookNotifier

    out: dict[str, Notifier] = {}
    for r in receivers:
        if r.slack is not None:
            out[r.name] = SlackNotifier(r.slack.token, r.slack.channel, base_url=r.slack.base_url)
        elif r.webhook is not None:
            out[r.name] = WebhookNotifier(
                r.webhook.url, headers=r.webhook.headers, max_alerts=r.webhook.max_alerts
            )
    return out


class NotificationHandler:
    """Outbox handler for ``notification`` deliveries; keeps each group's thread."""

    def __init__(self, notifiers: Mapping[str, Notifier], alerts: AlertStore) -> None:
        self.notifiers = notifiers
        self.alerts = alerts

    def __call__(self, delivery: Delivery) -> DeliveryOutcome:
        notifier = self.notifiers.get(delivery.target)
        if notifier is None:
            return DeliveryOutcome(
                ok=False, permanent=True, detail=f"no receiver named {delivery.target!r}"
            )
        group = self.alerts.get_group(int(delivery.payload["group_id"]))
        thread = {} if delivery.payload.get("new_thread") else group.thread
        notification = replace(
            notification_from_json(delivery.payload["notification"], thread),
            idempotency_key=delivery.idempotency_key,
            attempt=delivery.attempts,
            queued_at=delivery.created_at,
        )
        outcome = notifier.send(notification)
        if not outcome.thread:
            return outcome
        # The group's thread after this message (streams deliver one at a time, in order).
        return replace(outcome, thread={**thread, **outcome.thread})

    def delivered(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        if outcome.thread:
            self.alerts.set_thread(int(delivery.payload["group_id"]), outcome.thread)
