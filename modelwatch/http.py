"""HTTP plumbing shared by every router: JSON errors, auth scopes, bounded bodies,
the input checks every route makes (:class:`ApiRoute`) and the id parameter types."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import DataError, SQLAlchemyError

from modelwatch.auth import KeyStore, Principal
from modelwatch.domain import Scope
from modelwatch.errors import (
    AuthError,
    FieldError,
    ModelwatchError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StoreError,
    UnsupportedMediaTypeError,
    ValidationFailed,
)
from modelwatch.storable import (
    INT32_MAX,
    INT64_MAX,
    NUL,
    NUL_MESSAGE,
    jsonable,
    may_hold_nul,
    nul_locations,
)

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER_S = 5

__all__ = [
    "ApiRoute",
    "BigDbId",
    "DbId",
    "ORJSONResponse",
    "Requires",
    "install_error_handlers",
    "parse_json",
    "read_body",
    "require",
]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits echoed back from the input
            return orjson.dumps(jsonable(content), option=orjson.OPT_NON_STR_KEYS)


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
        if isinstance(exc, (DataError, psycopg.DataError)):
            return _refused_value(exc)
        logger.error("store error: %s", exc)
        body = {"error": StoreError.code, "detail": f"store error: {type(exc).__name__}"}
        headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        return ORJSONResponse(body, status_code=503, headers=headers)

    async def on_request_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(tuple(e["loc"]), e["msg"], jsonable(e.get("input")) if _scalar(e) else None)
            for e in exc.errors()
        ]
        missing = next((e for e in exc.errors() if _no_such_id(e)), None)
        if missing is not None:
            error = NotFoundError(f"no record has {missing['loc'][-1]} {missing.get('input')}")
            return ORJSONResponse(error_body(error), status_code=404)
        return ORJSONResponse(error_body(ValidationFailed(errors)), status_code=422)

    app.add_exception_handler(ModelwatchError, on_modelwatch_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(SQLAlchemyError, on_database_error)
    # Bulk writes use the driver's connection directly (COPY), so its errors arrive raw.
    app.add_exception_handler(psycopg.Error, on_database_error)


def _refused_value(exc: Exception) -> Response:
    """The store refused a value the checks let through: still the input's fault (422),
    though the field is unknown here; logged so that the check missing can be added."""
    cause = exc.orig if isinstance(exc, DataError) else exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    logger.warning("the store refused a value that passed validation: %s", reason)
    error = ValidationFailed([FieldError(("body",), f"the store refused a value: {reason}")])
    return ORJSONResponse(error_body(error), status_code=422)


def _scalar(error: Any) -> bool:
    value = error.get("input")
    return value is None or isinstance(value, (str, int, float, bool, bytes))


def _no_such_id(error: Any) -> bool:
    return bool(error.get("type") == _ID_RANGE and error["loc"] and error["loc"][0] == "path")


# --- ids -----------------------------------------------------------------------

_ID_RANGE = "id_out_of_range"


def _id_within(limit: int) -> AfterValidator:
    def check(value: int) -> int:
        if not -limit - 1 <= value <= limit:
            raise PydanticCustomError(
                _ID_RANGE, "no record can have this id: ids are at most {limit}", {"limit": limit}
            )
        return value

    return AfterValidator(check)


DbId = Annotated[int, _id_within(INT32_MAX)]
"""An id parameter of a table whose ids are ``INTEGER`` (32 bits on PostgreSQL).

Beyond that range nothing can be found: a path id is answered 404 (no such record),
a query bound (e.g. ``before_id``) 422 naming the parameter. Both stores answer alike,
though SQLite's integers are wider."""

BigDbId = Annotated[int, _id_within(INT64_MAX)]
"""An id parameter of a table whose ids are ``BIGINT``; otherwise as :data:`DbId`."""


# --- what every route checks before its endpoint ---------------------------------

_JSON_TYPE = re.compile(r"^application/(?:json|[^;\s/]+\+json)$")


class ApiRoute(APIRoute):
    """A route that checks its input the same way on both stores before its endpoint:

    * a NUL character in a path parameter: 404 (nothing can be stored under such a
      name, so nothing is found); in a query parameter: 422 naming it;
    * a route with a request model refuses bodies of other content types than JSON
      (415; a missing content type is taken as JSON, as it always was) and parses its
      body with :func:`parse_json`, so malformed JSON and NUL characters are reported
      as on the raw ingest routes, with the field path. (Its caller is authenticated
      before the body is read by :mod:`modelwatch.limits`; routes reading a raw JSON
      body call :func:`check_json_content_type` once their caller is authenticated.)
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["strict_content_type"] = False  # a body without content type is JSON
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_model = self.body_field is not None

        async def checked(request: Request) -> Response:
            _check_params(request)
            if has_model:
                check_json_content_type(request)
                body = await request.body()
                if body:
                    # Starlette caches the parsed body here; FastAPI's request.json() reads it.
                    request._json = parse_json(body, ("body",))
            return await handler(request)

        return checked


def check_json_content_type(request: Request) -> None:
    """Refuse (415) a body whose content type is not JSON; none at all is taken as JSON."""
    declared = request.headers.get("content-type")
    if declared is None or not declared.strip():
        return
    media = declared.split(";")[0].strip().lower()
    if not _JSON_TYPE.match(media):
        raise UnsupportedMediaTypeError(
            f"content-type {media!r} is not supported here; send application/json"
        )


def _check_params(request: Request) -> None:
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise NotFoundError(f"nothing is stored under a {name} holding a NUL character")
    bad = [
        FieldError(("query", name), NUL_MESSAGE, value)
        for name, value in request.query_params.multi_items()
        if NUL in value or NUL in name
    ]
    if bad:
        raise ValidationFailed(bad)


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


def parse_json(body: bytes, loc: tuple[str | int, ...] = (), *, check_text: bool = True) -> Any:
    """The JSON document in ``body``; ``loc`` prefixes the path of each field error.

    Malformed JSON is reported at ``body`` with its line, column and (best effort) the
    field being parsed. With ``check_text`` a string holding a NUL character is refused
    at its own path, since the stores cannot keep such a string alike; the ingest routes
    leave that to their validators, which report it with the batch's other errors.
    """
    if not body:
        raise ValidationFailed([FieldError(("body",), "request body is empty; send a JSON object")])
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed([FieldError(("body",), _syntax_message(body, exc))]) from None
    if check_text and may_hold_nul(body):
        bad = [FieldError((*loc, *at), NUL_MESSAGE) for at in nul_locations(document)]
        if bad:
            raise ValidationFailed(bad[:100])
    return document


def _syntax_message(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"body is not valid UTF-8 at byte {bad.start}"
    where = f"line {exc.lineno} column {exc.colno} (char {exc.pos})"
    field = _field_at(text, exc.pos)
    inside = f" in {field}" if field else ""
    return f"malformed JSON at {where}{inside}: {exc.msg}"


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def _field_at(text: str, pos: int) -> str:
    """The path of the value being parsed at ``pos``, e.g. ``events[3].score``: best
    effort, read from the strings and punctuation before it."""
    stack: list[list[Any]] = []  # per open container: [kind, key or index]
    last = ""
    for token in _TOKEN.finditer(text, 0, pos):
        t = token.group()
        if t[0] == '"':
            last = t
        elif t in "{[":
            stack.append([t, None if t == "{" else 0])
        elif t in "}]":
            if stack:
                stack.pop()
        elif t == ":" and stack and stack[-1][0] == "{":
            stack[-1][1] = _unquote(last)
        elif t == "," and stack:
            stack[-1][1] = None if stack[-1][0] == "{" else stack[-1][1] + 1
    return FieldError(tuple(part for _, part in stack if part is not None), "").path()


def _unquote(token: str) -> str:
    try:
        key = orjson.loads(token)
    except orjson.JSONDecodeError:
        return token.strip('"')
    return key if isinstance(key, str) else token
