"""Signed webhooks, following the Standard Webhooks convention (standardwebhooks.com).

Headers: ``webhook-id`` (stable across retries: the receiver's idempotency key),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per secret, so a secret
can be rotated by signing with the new and the old one for a while. Secrets are
``whsec_`` followed by base64 of at least 24 random bytes, as the reference
libraries expect, so pipelines can verify with those libraries or with
:func:`verify` (also ``modelwatch webhooks verify`` and ``collector.sdk``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelwatch.errors import ModelwatchError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "NO_MATCH",
    "SignedHeaders",
    "StreamVerifier",
    "WebhookVerificationError",
    "generate_secret",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
    "verify_headers",
]

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
DEFAULT_TOLERANCE_S = 300
_PREFIX = "whsec_"
_MIN_KEY_BYTES = 24
NO_MATCH = "no signature matches the body with the given secret(s)"


class WebhookVerificationError(ModelwatchError):
    """A webhook's signature, timestamp or headers do not verify."""

    status_code = 401
    code = "bad_signature"


def generate_secret() -> str:
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when malformed."""
    body = secret.removeprefix(_PREFIX)
    body += "=" * (-len(body) % 4)  # other libraries make unpadded secrets
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"a webhook secret needs at least {_MIN_KEY_BYTES} bytes of key")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets_: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    ts = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(sign(s, msg_id, ts, body) for s in secrets_)
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts), HEADER_SIGNATURE: signatures}


@dataclass(frozen=True)
class SignedHeaders:
    """The Standard Webhooks headers of one delivery, its timestamp already checked."""

    msg_id: str
    timestamp: int
    signatures: tuple[str, ...]


def verify_headers(
    headers: Mapping[str, str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> SignedHeaders:
    """The headers of a delivery, before its body is read: all present, and a timestamp
    within ``tolerance_s`` of now; else :class:`WebhookVerificationError` naming what."""
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not lower.get(h)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    msg_id, raw_ts = lower[HEADER_ID], lower[HEADER_TIMESTAMP]
    try:
        ts = int(raw_ts)
    except ValueError:
        raise WebhookVerificationError(
            f"{HEADER_TIMESTAMP} {raw_ts!r} is not Unix seconds"
        ) from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise WebhookVerificationError(
            f"{HEADER_TIMESTAMP} is {int(current - ts)} s from now (tolerance {tolerance_s} s)"
        )
    offered = tuple(s.strip() for s in lower[HEADER_SIGNATURE].split(" ") if s.strip())
    return SignedHeaders(msg_id, ts, offered)


class StreamVerifier:
    """The signatures of a body computed as it streams in, for every candidate sender.

    ``senders`` maps a name (e.g. a pipeline) to its secrets; :meth:`signers` names
    those whose secret signed the body, once all of it has been fed to :meth:`update`.
    """

    def __init__(self, signed: SignedHeaders, senders: Mapping[str, Sequence[str]]) -> None:
        self.signed = signed
        prefix = f"{signed.msg_id}.{signed.timestamp}.".encode()
        self._macs = [
            (name, hmac.new(secret_key(secret), prefix, hashlib.sha256))
            for name, secrets_ in senders.items()
            for secret in secrets_
        ]

    def update(self, chunk: bytes) -> None:
        for _, mac in self._macs:
            mac.update(chunk)

    def signers(self) -> set[str]:
        found = set()
        for name, mac in self._macs:
            expected = "v1," + base64.b64encode(mac.digest()).decode()
            if any(hmac.compare_digest(expected, sig) for sig in self.signed.signatures):
                found.add(name)
        return found


def verify(
    secrets_: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a delivery; returns its ``webhook-id``. Any of ``secrets_`` may have signed it.

    Raises :class:`WebhookVerificationError` naming what is wrong: a missing header,
    a timestamp outside ``tolerance_s`` (replays), or no matching signature."""
    signed = verify_headers(headers, tolerance_s=tolerance_s, now=now)
    verifier = StreamVerifier(signed, {"": [secrets_] if isinstance(secrets_, str) else secrets_})
    verifier.update(body)
    if not verifier.signers():
        raise WebhookVerificationError(NO_MATCH)
    return signed.msg_id
