"""Who sent a pipeline callback, decided before its body is believed.

A signed callback names its retrain inside the body, so the signature is computed
while the body streams in, against the secrets of every configured pipeline; its
headers (and their timestamp) are checked before the first byte is read. Until the
signature verifies, the body is spooled to disk beyond a small buffer: a caller
without a secret cannot make the server hold it in memory, nor learn anything from
its answer but that the signature does not verify. Only then is the body parsed,
and its retrain must belong to a pipeline whose secret signed it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import Request

from modelwatch.errors import PayloadTooLargeError
from modelwatch.store.receipts import Receipt
from modelwatch.store.retrain import RetrainRequest
from modelwatch.webhooks import (
    NO_MATCH,
    StreamVerifier,
    WebhookVerificationError,
    verify_headers,
)

__all__ = ["SignedCallback", "read_signed", "sender_of"]

_IN_MEMORY = 1024 * 1024  # bytes of an unverified body kept in memory; the rest on disk


@dataclass(frozen=True)
class SignedCallback:
    """A body whose signature verified, the ``webhook-id`` it came with, and the
    senders (pipeline names) whose secret signed it."""

    body: bytes
    webhook_id: str
    signers: frozenset[str]


async def read_signed(
    request: Request, senders: Mapping[str, Sequence[str]], limit: int
) -> SignedCallback:
    """The body of a signed request, refused (401) unless one of ``senders`` signed it."""
    signed = verify_headers(request.headers)
    verifier = StreamVerifier(signed, senders)
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as spool:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
            verifier.update(chunk)
            spool.write(chunk)
        signers = verifier.signers()
        if not signers:
            raise WebhookVerificationError(NO_MATCH)
        spool.seek(0)
        body = spool.read()
    return SignedCallback(body, signed.msg_id, frozenset(signers))


def sender_of(callback: SignedCallback, retrain: RetrainRequest) -> Receipt:
    """The receipt of ``callback`` about ``retrain``: refused with the answer a bad
    signature gets unless the retrain's own pipeline signed it."""
    if retrain.pipeline not in callback.signers:
        raise WebhookVerificationError(NO_MATCH)
    return Receipt(f"pipeline:{retrain.pipeline}", callback.webhook_id)
