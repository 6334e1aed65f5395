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
from fastapi import Request, Response

from modelwatch.errors import FieldError, ValidationFailed

__all__ = ["Page", "body_next", "decode_cursor", "encode_cursor", "page_of", "publish_next"]

T = TypeVar("T")
Key = tuple[int | str, ...]


def encode_cursor(key: Sequence[int | str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _bad(msg: str, value: str) -> ValidationFailed:
    return ValidationFailed([FieldError(("query", "cursor"), msg, value)])


def decode_cursor(cursor: str | None, kinds: Sequence[type]) -> Key | None:
    """The sort key a cursor holds, checked against the route's key ``kinds`` (int or str)."""
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
        if type(value) is not kind or (isinstance(value, int) and abs(value) >= 2**63):
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


def body_next(request: Request, response: Response, page: Page[Any]) -> dict[str, Any]:
    """The body fields every paged list carries beside its items."""
    return {"next": page.next, "next_url": publish_next(request, response, page.next)}
