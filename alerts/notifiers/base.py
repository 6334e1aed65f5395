"""The notifier contract.

The dispatcher turns alert groups into :class:`Notification` objects and
writes them to the outbox; the delivery worker hands each to its receiver's
:class:`Notifier` and records the :class:`DeliveryOutcome` of every attempt.
A notifier never raises for a delivery problem: it reports it, and the worker
retries (honouring ``retry_after``) or gives up on ``permanent`` failures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelwatch.outbox import DeliveryOutcome

__all__ = ["Alert", "DeliveryOutcome", "Notification", "Notifier"]


@dataclass(frozen=True)
class Alert:
    """One alert in a notification (Alertmanager's alert object)."""

    fingerprint: str
    status: str  # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    value: float | None = None
    threshold: float | None = None
    trend: list[float] = field(default_factory=list)  # recent values, oldest first
    generator_url: str = ""


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one alert group, at one moment.

    ``thread`` carries what the receiver returned for earlier notifications of
    the same group (e.g. Slack's channel and message ``ts``), so updates and
    resolutions can go to the same thread or message.
    """

    receiver: str
    group_key: str
    status: str  # "firing" if any alert fires, else "resolved"
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    alerts: list[Alert]
    external_url: str = ""
    truncated_alerts: int = 0
    thread: dict[str, Any] = field(default_factory=dict)
    # The outbox delivery's key: the same on every attempt, so receivers can drop repeats.
    idempotency_key: str = ""
    # Which attempt at the delivery this is (1 the first; more after a retry or a worker
    # that died mid-send) and when the delivery was written (no later than its first
    # attempt): a receiver without idempotency keys (Slack) looks for an earlier post.
    attempt: int = 1
    queued_at: datetime | None = None


class Notifier(ABC):
    """Sends notifications of one receiver. Implementations are small and stateless
    beyond their client; ``send`` must not raise for delivery problems."""

    @abstractmethod
    def send(self, notification: Notification) -> DeliveryOutcome: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients; the default has nothing to release."""
