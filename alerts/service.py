"""Alerting in the background: policies, alert states, grouped notifications, outbox, receivers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from alerts.delivery import NotificationHandler, build_notifiers
from alerts.dispatch import NOTIFICATION, Dispatcher
from alerts.engine import PolicyEngine
from alerts.notifiers.base import Notifier
from modelwatch.config import Config
from modelwatch.outbox import DeliveryWorker, Outbox, RetryPolicy
from modelwatch.policies import PolicySpec
from modelwatch.store.alerts import AlertStore
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry

__all__ = ["AlertingService"]

log = logging.getLogger(__name__)


class AlertingService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        config: Config,
        worker: str,
        *,
        notifiers: Mapping[str, Notifier] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.alerts = AlertStore(store)
        self.engine = PolicyEngine(store, registry, self.policies, config.external_url)
        self.dispatcher = Dispatcher(
            store,
            config.route,
            config.receivers,
            config.inhibit_rules,
            config.external_url,
            self.policies,
        )
        self.handler = NotificationHandler(
            notifiers if notifiers is not None else build_notifiers(config.receivers), self.alerts
        )
        self.outbox = Outbox(store)
        self.delivery = DeliveryWorker(
            self.outbox, {NOTIFICATION: self.handler}, worker, retry, self.handler.delivered
        )
        self.clock = clock

    def policies(self) -> list[PolicySpec]:
        """The config's policies, then those made through the API."""
        return [*self.config.policies, *self.alerts.policies()]

    def cycle(self, delivery_budget_s: float = 10.0) -> None:
        """One pass: evaluate policies, write due notifications, deliver. Never raises."""
        try:
            self.engine.evaluate()
            self.dispatcher.flush(self.clock() if self.clock else None)
            self.delivery.drain(delivery_budget_s)
        except Exception:
            log.exception("alerting cycle failed")
