"""Cursor pagination for list routes: opaque cursors, a ``next`` link, never a silent cut.

A cursor is the sort key of the last row a page returned, as URL-safe base64 of
JSON. A page asks the store for ``limit + 1`` rows after the cursor; the extra
row only says whether another page exists, so a full page is never mistaken
for the end.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Query, Request, Response

from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.storable import INT64_MAX

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "Page",
    "body_next",
    "cursor_param",
    "decode_cursor",
    "encode_cursor",
    "limit_param",
    "page_list",
    "page_of",
    "publish_next",
]

# Page size of list routes whose rows are small records (models, alerts, audit records...).
DEFAULT_PAGE = 100
MAX_PAGE = 1000

T = TypeVar("T")
Key = tuple[int | str, ...]


def encode_cursor(key: Sequence[int | str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _bad(msg: str, value: str) -> ValidationFailed:
    return ValidationFailed([FieldError(("query", "cursor"), msg, value)])


def decode_cursor(
    cursor: str | None, kinds: Sequence[type], int_max: int = INT64_MAX
) -> Key | None:
    """The sort key a cursor holds, checked against the route's key ``kinds`` (int or str).

    Integers past ``int_max`` (the key column's width) and text with NUL are refused
    here, so both stores answer a forged cursor with the same 422."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _bad("not a cursor this route returned", cursor) from None
    if not isinstance(key, list) or len(key) != len(kinds):
        raise _bad("not a cursor this route returned", cursor)
    for value, kind in zip(key, kinds, strict=True):
        if type(value) is not kind or (isinstance(value, int) and abs(value) > int_max):
            raise _bad("not a cursor this route returned", cursor)
        if isinstance(value, str) and "\x00" in value:
            raise _bad("not a cursor this route returned", cursor)
    return tuple(key)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next page (None on the last)."""

    items: list[T]
    next: str | None


def page_of(rows: list[T], limit: int, key: Callable[[T], Sequence[int | str]]) -> Page[T]:
    """Cut ``limit + 1`` fetched rows to a page; the extra row means a next page exists."""
    if len(rows) <= limit:
        return Page(rows, None)
    kept = rows[:limit]
    return Page(kept, encode_cursor(key(kept[-1])))


def publish_next(request: Request, response: Response, cursor: str | None) -> str | None:
    """The next page's URL, also set as the ``Link: <...>; rel="next"`` header."""
    if cursor is None:
        return None
    url = str(request.url.include_query_params(cursor=cursor))
    response.headers["Link"] = f'<{url}>; rel="next"'
    return url


def page_list(
    items: Sequence[T], key: Callable[[T], Key], after: Key | None, limit: int
) -> Page[T]:
    """A page of a list held in memory (config-declared rows), ordered by ``key``."""
    ordered = sorted(items, key=key)
    rest = ordered if after is None else [i for i in ordered if key(i) > after]
    return page_of(rest[: limit + 1], limit, key)


def cursor_param() -> Any:
    """The ``cursor`` query parameter every paged route takes."""
    return Query(None, description="the `next` of the previous page (omit for the first page)")


def limit_param(default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> Any:
    """The ``limit`` query parameter: a page size from 1 to ``maximum``."""
    return Query(
        default, ge=1, le=maximum, description=f"page size (default {default}, at most {maximum})"
    )


def body_next(request: Request, response: Response, page: Page[Any]) -> dict[str, Any]:
    """The body fields every paged list carries beside its items."""
    return {"next": page.next, "next_url": publish_next(request, response, page.next)}
