"""Delivering pipeline webhooks from the outbox: signed, with honest outcomes.

2xx is delivered. 410 Gone disables the pipeline endpoint (no further
deliveries until it is enabled again). 429 and 503 are retried after their
``Retry-After``; other failures and connection errors after the outbox's
exponential backoff with jitter, until the pipeline's ``max_age``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx
import orjson

from modelwatch.outbox import Delivery, DeliveryOutcome
from modelwatch.pipelines import PipelineSpec
from modelwatch.store.retrain import RetrainStore
from modelwatch.timeutil import parse_retry_after
from modelwatch.webhooks import signed_headers

__all__ = ["PipelineSender", "webhook_body"]

log = logging.getLogger(__name__)
_USER_AGENT = "modelwatch-webhooks/1"


def webhook_body(delivery: Delivery) -> bytes:
    """The exact bytes sent (and signed): the payload as stored, serialised the same way
    on every attempt."""
    return orjson.dumps(delivery.payload, option=orjson.OPT_SORT_KEYS)


class PipelineSender:
    """Outbox handler for ``pipeline`` deliveries (retrain requests, promotions)."""

    def __init__(
        self,
        pipelines: Mapping[str, PipelineSpec],
        retrain: RetrainStore,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.retrain = retrain
        self.client = httpx.Client(transport=transport)

    def __call__(self, delivery: Delivery) -> DeliveryOutcome:
        spec = self.pipelines.get(delivery.target)
        if spec is None:
            return DeliveryOutcome(
                ok=False, permanent=True, detail=f"no pipeline named {delivery.target!r}"
            )
        with self.retrain.store.read() as conn:
            disabled = self.retrain.disabled_reason(conn, spec.name)
        if disabled is not None:
            return DeliveryOutcome(
                ok=False, permanent=True, detail=f"pipeline {spec.name!r} is disabled: {disabled}"
            )
        body = webhook_body(delivery)
        headers = {
            **spec.headers,
            **signed_headers(spec.secrets, delivery.idempotency_key, body),
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
        }
        try:
            response = self.client.post(
                spec.url, content=body, headers=headers, timeout=spec.timeout
            )
        except httpx.HTTPError as exc:
            return DeliveryOutcome(ok=False, detail=f"{type(exc).__name__}: {exc}")
        return self._outcome(spec, response)

    def _outcome(self, spec: PipelineSpec, response: httpx.Response) -> DeliveryOutcome:
        code = response.status_code
        text = response.text[:500]
        if 200 <= code < 300:
            return DeliveryOutcome(ok=True, status_code=code, detail=text)
        if code == 410:
            reason = f"the endpoint answered 410 Gone: {text}".strip()
            with self.retrain.store.write() as conn:
                self.retrain.disable_endpoint(conn, spec.name, reason)
            log.warning("pipeline %s answered 410 Gone; it is disabled", spec.name)
            return DeliveryOutcome(ok=False, permanent=True, status_code=code, detail=reason)
        retry_after = (
            parse_retry_after(response.headers.get("retry-after")) if code in (429, 503) else None
        )
        return DeliveryOutcome(
            ok=False, status_code=code, retry_after=retry_after, detail=f"HTTP {code}: {text}"
        )
