"""What both stores can hold, and values made safe to show in an error.

PostgreSQL text cannot hold the NUL character (``\\u0000``) while SQLite stores
it, and integer columns hold 32 bits (``INTEGER``) or 64 bits (``BIGINT``) on
PostgreSQL but any 64-bit value on SQLite. Input is checked against the
narrower store, so that both answer the same: a NUL anywhere in a string or an
integer beyond its column is the client's error (422), never the store's (503).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "NUL",
    "NUL_MESSAGE",
    "jsonable",
    "may_hold_nul",
    "nul_locations",
]

NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_PREVIEW_CHARS = 200
_MAX_DEPTH = 8
_MAX_ITEMS = 50

Loc = tuple[str | int, ...]


def may_hold_nul(body: bytes) -> bool:
    """Whether JSON ``body`` may hold a NUL (JSON can only write it escaped, ``\\u0000``).

    Cheap on the ingest path: most bodies hold no backslash at all, which one ``memchr``
    tells; searching for the whole escape is many times slower, as its last character
    is the commonest digit."""
    return b"\\" in body and b"\\u0000" in body


def nul_locations(value: object, loc: Loc = ()) -> Iterator[Loc]:
    """The path of every string (object key or value) in parsed JSON holding a NUL."""
    if isinstance(value, str):
        if NUL in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                yield (*loc, key)
            yield from nul_locations(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from nul_locations(item, (*loc, i))


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as something orjson always serialises, for echoing input in errors:
    integers beyond 64 bits, bytes, NaN and infinities become strings; containers are
    cut short; anything else becomes its ``repr``."""
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else _cut(value)
    if isinstance(value, int):
        return value if -INT64_MAX - 1 <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _cut(bytes(value).decode("utf-8", "backslashreplace"))
    if depth >= _MAX_DEPTH:
        return type(value).__name__
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {_key(k): jsonable(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    try:  # datetimes, enums, UUIDs, ... serialise as they are
        orjson.dumps(value)
    except TypeError:
        return _cut(repr(value))
    return value


def _key(key: object) -> str:
    return key if isinstance(key, str) else str(jsonable(key))


def _cut(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…"
