"""HTTP plumbing shared by every router: JSON errors, auth scopes, bounded bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from modelwatch.auth import KeyStore, Principal
from modelwatch.domain import Scope
from modelwatch.errors import (
    AuthError,
    FieldError,
    ModelwatchError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StoreError,
    ValidationFailed,
)

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER_S = 5

__all__ = [
    "ORJSONResponse",
    "Requires",
    "install_error_handlers",
    "parse_json",
    "read_body",
    "require",
]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_body(exc: ModelwatchError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.code, "detail": str(exc)}
    if isinstance(exc, ValidationFailed):
        body["errors"] = [e.as_dict() for e in exc.errors]
    return body


def install_error_handlers(app: FastAPI) -> None:
    async def on_modelwatch_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelwatchError)
        headers = None
        if isinstance(exc, AuthError):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, StoreError):
            headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        return ORJSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)

    async def on_database_error(_: Request, exc: Exception) -> Response:
        logger.error("store error: %s", exc)
        body = {"error": StoreError.code, "detail": f"store error: {type(exc).__name__}"}
        headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        return ORJSONResponse(body, status_code=503, headers=headers)

    async def on_request_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(
                tuple(e["loc"]), e["msg"], e.get("input") if _scalar(e.get("input")) else None
            )
            for e in exc.errors()
        ]
        return ORJSONResponse(error_body(ValidationFailed(errors)), status_code=422)

    app.add_exception_handler(ModelwatchError, on_modelwatch_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(SQLAlchemyError, on_database_error)
    # Bulk writes use the driver's connection directly (COPY), so its errors arrive raw.
    app.add_exception_handler(psycopg.Error, on_database_error)


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency that authenticates the caller and checks its key's scope.

    While no key exists the service is open (it then only binds to loopback,
    unless started with ``--insecure``).
    """

    async def dependency(request: Request) -> Principal:
        keys: KeyStore = request.app.state.keys
        header = request.headers.get("authorization", "")
        if not header:
            anonymous: Principal = await _run(
                request, keys.principal, None, "missing API key: send 'Authorization: Bearer <key>'"
            )
            return anonymous
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("the Authorization header must be 'Bearer <key>'")
        principal: Principal = await _run(request, keys.principal, token.strip())
        if not principal.allows(scope):
            raise PermissionDeniedError(
                f"API key {principal.name!r} has scope {principal.scope.value!r}; "
                f"this needs {scope.value!r}"
            )
        request.state.principal = principal
        return principal

    return dependency


async def _run(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def Requires(scope: Scope) -> Any:
    return Depends(require(scope))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body:
        raise ValidationFailed([FieldError((), "request body is empty; send a JSON object")])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed([FieldError((), f"malformed JSON: {exc}")]) from None
