"""Alert webhooks carry their outbox delivery's key as ``webhook-id``, the same on
every retry, so a receiver can drop the repeat a crashed worker sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.notifiers.webhook import HEADER_ID, WebhookNotifier
from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store.engine import Store
from tests.alerts.helpers import Results, accuracy
from tests.alerts.receivers import Reply, WebhookReceiver


def test_every_attempt_of_a_notification_has_its_deliverys_webhook_id(store: Store) -> None:
    results = Results(store)
    with WebhookReceiver([Reply(503), Reply(200)]) as hook:
        config = Config.model_validate(
            {
                "receivers": [{"name": "oncall", "webhook": {"url": hook.url}}],
                "route": {"receiver": "oncall", "group_by": ["model"], "group_wait": "0s"},
                "policies": [
                    {
                        "name": "accuracy-low",
                        "model": "churn",
                        "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
                    }
                ],
            }
        )
        later = datetime.now(UTC) + timedelta(minutes=1)
        service = AlertingService(
            store,
            results.registry,
            config,
            "test",
            notifiers={"oncall": WebhookNotifier(hook.url)},
            retry=RetryPolicy(initial_s=0.0, jitter=0.0),
            clock=lambda: later,
        )
        results.window(0, [accuracy(0.5)])
        service.cycle()
        service.cycle()
    with store.read() as conn:
        [(key,)] = conn.exec_driver_sql("SELECT idempotency_key FROM deliveries").all()
    assert [r.headers.get(HEADER_ID) for r in hook.requests] == [key, key]
