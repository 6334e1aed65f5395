"""A retraining world for tests: results that fire a retrain policy, a pipeline receiver,
the retrain service with fast retries, and readers for the tables behind them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import orjson
from sqlalchemy import select, update

from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store import tables as t
from modelwatch.store.audit import AuditLog, AuditRecord
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.timeutil import utcnow
from modelwatch.webhooks import generate_secret
from retrain.service import RetrainService
from tests.alerts.helpers import Results, drift
from tests.alerts.receivers import Reply, WebhookReceiver, _handler_class

__all__ = [
    "FAST",
    "PIPELINE",
    "POLICY",
    "SECRET",
    "PipelineReceiver",
    "World",
    "attempts",
    "audit",
    "deliveries",
    "requests",
    "retrain_config",
    "seconds_from_now",
]

PIPELINE = "trainer"
POLICY = "age-drift"
SECRET = generate_secret()
FAST = RetryPolicy(initial_s=0.0, jitter=0.0)


class PipelineReceiver(WebhookReceiver):
    """A :class:`WebhookReceiver` that can listen on a given port (to come back after a
    stop on the same URL) and whose default reply can be changed."""

    def __init__(
        self, replies: Iterable[Reply] = (), *, default: Reply | None = None, port: int = 0
    ) -> None:
        super().__init__(replies, default=default)
        if port:
            self._server.server_close()
            self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self._answer))
            self._server.daemon_threads = True
            self.port = port

    def answer_with(self, reply: Reply) -> None:
        with self._lock:
            self._default = reply


def retrain_config(
    url: str,
    *,
    pipeline: dict[str, Any] | None = None,
    retrain: dict[str, Any] | None = None,
    policies: list[dict[str, Any]] | None = None,
    pipelines: list[dict[str, Any]] | None = None,
) -> Config:
    """A ``trainer`` pipeline at ``url`` and a policy retraining churn when age drifts."""
    policy = {
        "name": POLICY,
        "model": "churn",
        "aliases": ["champion"],
        "severity": "warning",
        "condition": {"status": {"metric": "ks", "column": "age"}},
        "actions": [
            "notify",
            {
                "retrain": {
                    "pipeline": PIPELINE,
                    "cooldown": "6h",
                    "training_data": {"since": "90d", "label_delay": "7d"},
                    **(retrain or {}),
                }
            },
        ],
    }
    spec = {
        "name": PIPELINE,
        "url": url,
        "secret": SECRET,
        "headers": {"Authorization": "Bearer airflow-token"},
        "training_data": {"table": "warehouse.churn_events", "since": "30d"},
        **(pipeline or {}),
    }
    return Config.model_validate(
        {
            "pipelines": [spec, *(pipelines or [])],
            "policies": [policy] if policies is None else policies,
            "external_url": "http://modelwatch.test",
        }
    )


@dataclass
class World:
    """Results for churn v1 (champion) and v2 (challenger); alerting and retraining on them."""

    store: Store
    results: Results
    alerting: AlertingService
    service: RetrainService
    window: int = 0

    @classmethod
    def make(cls, store: Store, config: Config, retry: RetryPolicy = FAST) -> World:
        results = Results(store)
        alerting = AlertingService(store, results.registry, config, "test", notifiers={})
        service = RetrainService(
            store, results.registry, config, "test", alerting.policies, retry=retry
        )
        return cls(store, results, alerting, service)

    def another_worker(self, config: Config) -> RetrainService:
        """A second retrain service on the same store (another worker process)."""
        return RetrainService(
            self.store, Registry(self.store), config, "other", self.alerting.policies, retry=FAST
        )

    def drift(self, drifting: bool = True) -> None:
        """The next window of churn v1, with (or without) drift of ``age``; then evaluate."""
        self.results.window(self.window, [drift("age", 0.4 if drifting else 0.01, drifting)])
        self.window += 1
        self.alerting.engine.evaluate()

    def new_episode(self) -> None:
        """Resolve the drift alert, then make it fire again (a new alert episode)."""
        self.drift(False)
        self.drift(True)

    def end_cooldown(self) -> None:
        """Pretend the last retrain was requested a day ago."""
        with self.store.write() as conn:
            conn.execute(
                update(t.retrain_cooldowns).values(last_requested_at=utcnow() - timedelta(days=1))
            )

    def settle(self, status: str = "failed") -> None:
        """Take every in-flight retrain out of flight, as a pipeline's callback would."""
        with self.store.write() as conn:
            conn.execute(
                update(t.retrain_requests)
                .where(t.retrain_requests.c.status.in_(["requested", "delivered", "running"]))
                .values(status=status, completed_at=utcnow())
            )

    def make_due(self) -> None:
        """Let every pending delivery be retried now, whatever its Retry-After said."""
        with self.store.write() as conn:
            conn.execute(
                update(t.deliveries)
                .where(t.deliveries.c.status == "pending")
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )


def requests(store: Store) -> list[dict[str, Any]]:
    r = t.retrain_requests
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(select(r).order_by(r.c.id))]


def deliveries(store: Store, kind: str = "pipeline") -> list[dict[str, Any]]:
    d = t.deliveries
    with store.read() as conn:
        rows = conn.execute(select(d).where(d.c.kind == kind).order_by(d.c.id))
        return [{**dict(row._mapping), "payload": orjson.loads(row.payload)} for row in rows]


def attempts(store: Store, delivery_id: int) -> list[dict[str, Any]]:
    a = t.delivery_attempts
    with store.read() as conn:
        rows = conn.execute(select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.attempt))
        return [dict(row._mapping) for row in rows]


def audit(store: Store, action: str | None = None, **filters: Any) -> list[AuditRecord]:
    """Audit records, oldest first."""
    return list(reversed(AuditLog(store).query(action=action, limit=1000, **filters)))


def seconds_from_now(moment: datetime) -> float:
    return (moment - utcnow()).total_seconds()
