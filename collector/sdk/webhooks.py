"""Verifying modelwatch's signed webhooks in a pipeline (Standard Webhooks).

    from collector.sdk.webhooks import verify_webhook, WebhookVerificationError

    def handle(request):  # any web framework
        try:
            verify_webhook(os.environ["MODELWATCH_WEBHOOK_SECRET"], request.headers, request.body)
        except WebhookVerificationError as exc:
            return 401, str(exc)
        payload = json.loads(request.body)  # {"type": "retrain.requested", "data": {...}}
        # The webhook-id header is stable across retries: use it to ignore repeats.

Pass several secrets while rotating one. :func:`signed_headers` signs a
callback body the same way (``POST /v1/retrain/callback``).
"""

from modelwatch.webhooks import WebhookVerificationError, signed_headers
from modelwatch.webhooks import verify as verify_webhook

__all__ = ["WebhookVerificationError", "signed_headers", "verify_webhook"]
