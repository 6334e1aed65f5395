"""Notifiers: one small interface (send, and report the outcome), one module per kind."""

from alerts.notifiers.base import (
    Alert,
    DeliveryOutcome,
    Notification,
    Notifier,
)

__all__ = ["Alert", "DeliveryOutcome", "Notification", "Notifier"]
