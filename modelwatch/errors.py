"""One exception root with specific subclasses.

Third-party errors are translated into these at the boundary; the HTTP layer
turns each into a JSON error with a status code and, where known, the path of
the offending field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "FieldError",
    "ModelwatchError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "StoreError",
    "UnsupportedMediaTypeError",
    "UpstreamError",
    "ValidationFailed",
]


class ModelwatchError(Exception):
    """Root of every error modelwatch raises on purpose."""

    status_code = 500
    code = "internal_error"


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``loc`` is its path, e.g. ``("events", 3, "features")``."""

    loc: tuple[str | int, ...]
    msg: str
    input: object = field(default=None)

    def as_dict(self) -> dict[str, object]:
        return {"loc": list(self.loc), "msg": self.msg, "input": _echoable(self.input)}

    def path(self) -> str:
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def _echoable(value: object) -> object:
    """The bad input as JSON can carry it: an integer beyond 64 bits is echoed as text."""
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


class ValidationFailed(ModelwatchError):
    """Input did not match the schema; carries every field error found (up to a cap)."""

    status_code = 422
    code = "validation_error"

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        summary = f"{first.path()}: {first.msg}" if first else "invalid input"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(summary + more)


class NotFoundError(ModelwatchError):
    status_code = 404
    code = "not_found"


class ConflictError(ModelwatchError):
    status_code = 409
    code = "conflict"


class PayloadTooLargeError(ModelwatchError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ModelwatchError):
    """The body's content type is not one the route reads (e.g. text/plain for JSON)."""

    status_code = 415
    code = "unsupported_media_type"


class AuthError(ModelwatchError):
    status_code = 401
    code = "unauthorized"


class PermissionDeniedError(ModelwatchError):
    status_code = 403
    code = "forbidden"


class StoreError(ModelwatchError):
    """The store could not be reached or refused an operation."""

    status_code = 503
    code = "store_unavailable"


class OverloadedError(StoreError):
    """The service is at its limit of requests in flight; the client retries later.

    A :class:`StoreError` so that everything treating the store's 503 as "retry with
    backoff" (clients, the SDK, dashboards of error codes) treats this alike."""

    code = "overloaded"


class UpstreamError(ModelwatchError):
    """A registry modelwatch depends on (MLflow) could not be reached or failed; the
    request may be retried once it is back."""

    status_code = 502
    code = "upstream_unavailable"


class ConfigError(ModelwatchError):
    """A config file is malformed; the message names the file, the key and the bad value."""

    status_code = 400
    code = "config_error"
