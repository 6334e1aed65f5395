"""Retraining in the background: trigger requests, promote, deliver pipeline webhooks.

A pipeline delivery that exhausts its retries (or hits a disabled endpoint)
raises a ``PipelineDeliveryFailed`` alert for the model and pipeline, routed to
receivers like any other; the next delivery that gets through resolves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from sqlalchemy import Connection

from modelwatch.config import Config
from modelwatch.outbox import Delivery, DeliveryOutcome, DeliveryWorker, Outbox, RetryPolicy
from modelwatch.policies import PolicySpec
from modelwatch.store import audit
from modelwatch.store.alerts import FIRING, RESOLVED, AlertStore, fingerprint
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.store.retrain import DEAD, DELIVERED, REQUESTED, RetrainStore
from retrain.promotion import Promoter
from retrain.sender import PipelineSender
from retrain.trigger import RETRAIN_REQUESTED, RetrainTrigger

__all__ = ["DELIVERY_FAILED_ALERT", "PIPELINE_RETRY", "RetrainService"]

log = logging.getLogger(__name__)
DELIVERY_FAILED_ALERT = "PipelineDeliveryFailed"
# Standard Webhooks' suggested schedule, roughly: seconds, then minutes, then hours.
PIPELINE_RETRY = RetryPolicy(initial_s=5.0, multiplier=5.0, max_s=5 * 3600.0, jitter=0.2)


class RetrainService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        config: Config,
        worker: str,
        policies: Callable[[], Sequence[PolicySpec]],
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        pipelines = {p.name: p for p in config.pipelines}
        self.retrain = RetrainStore(store)
        self.alerts = AlertStore(store)
        self.trigger = RetrainTrigger(store, registry, pipelines, policies, config.external_url)
        self.promoter = Promoter(store, registry, pipelines, policies)
        self.sender = PipelineSender(pipelines, self.retrain, transport)
        self.delivery = DeliveryWorker(
            Outbox(store),
            {"pipeline": self.sender},
            worker,
            retry or PIPELINE_RETRY,
            on_delivered=self._delivered,
            on_dead=self._dead,
        )

    def cycle(self, delivery_budget_s: float = 10.0) -> None:
        """One pass: new retrain requests, promotions, deliveries. Never raises."""
        try:
            self.trigger.run()
            self.promoter.run()
            self.delivery.drain(delivery_budget_s)
        except Exception:
            log.exception("retrain cycle failed")

    def _delivered(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        details = {"type": delivery.payload.get("type"), "status_code": outcome.status_code}
        self._settle(delivery, outcome, DELIVERED, "pipeline.delivered", details)

    def _dead(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        details = {"error": outcome.detail[:500]}
        self._settle(delivery, outcome, DEAD, "pipeline.delivery_failed", details)

    def _settle(
        self,
        delivery: Delivery,
        outcome: DeliveryOutcome,
        status: str,
        action: str,
        details: dict[str, Any],
    ) -> None:
        """Record a delivery's final outcome: the retrain's status, the audit record, and
        the delivery-failed alert (fired when dead, resolved by a later success)."""
        data = delivery.payload.get("data", {})
        failed = status == DEAD
        with self.store.write() as conn:
            if delivery.payload.get("type") == RETRAIN_REQUESTED:
                if failed:
                    reason = outcome.detail[:500]
                    self.retrain.set_status(conn, delivery.idempotency_key, DEAD, reason=reason)
                else:
                    self.retrain.set_status(
                        conn, delivery.idempotency_key, DELIVERED, only_from=(REQUESTED,)
                    )
            audit.record(
                conn,
                audit.SYSTEM,
                action,
                model=data.get("model"),
                version=data.get("version"),
                subject=delivery.idempotency_key,
                details={"pipeline": delivery.target, "attempts": delivery.attempts, **details},
            )
            self._failure_alert(conn, delivery, data, outcome if failed else None)

    def _failure_alert(
        self,
        conn: Connection,
        delivery: Delivery,
        data: dict[str, Any],
        failure: DeliveryOutcome | None,
    ) -> None:
        """Fire (``failure``) or resolve the model's delivery-failed alert for this pipeline."""
        model = str(data.get("model") or "")
        labels = {
            "alertname": DELIVERY_FAILED_ALERT,
            "model": model,
            "pipeline": delivery.target,
            "severity": "critical",
        }
        fp = fingerprint(labels)
        old = self.alerts.by_fingerprint(conn, fp)
        if failure is None and (old is None or old.state != FIRING):
            return
        detail = failure.detail[:300] if failure else "a later delivery got through"
        row = {
            "fingerprint": fp,
            "policy": DELIVERY_FAILED_ALERT,
            "model": model,
            "labels": labels,
            "annotations": {
                "summary": f"webhook to pipeline {delivery.target} for {model} "
                + ("failed for good" if failure else "delivered again"),
                "description": f"delivery {delivery.idempotency_key} "
                f"after {delivery.attempts} attempt(s): {detail}",
            },
            "state": FIRING if failure else RESOLVED,
            "value": float(delivery.attempts),
            "threshold": None,
            "trend": [],
            "consecutive": 1,
            "window_start_us": None,
        }
        self.alerts.save(conn, row, old, detail)
