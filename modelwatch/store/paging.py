"""Keyset pages of catalog tables: rows after a cursor's key, in the key's order.

The key is a unique, indexed column (the primary key or a unique name), so a
page starts exactly where the previous one stopped, however rows are added.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select

__all__ = ["keyset"]


def keyset(
    query: Select[Any],
    column: ColumnElement[Any],
    after: int | str | None,
    limit: int | None,
    *,
    newest_first: bool = False,
) -> Select[Any]:
    """``query`` ordered by ``column`` (descending when ``newest_first``), from past ``after``.

    Callers pass the page size plus one as ``limit``: the extra row tells a full
    page from the last one.
    """
    if after is not None:
        query = query.where(column < after if newest_first else column > after)
    query = query.order_by(column.desc() if newest_first else column.asc())
    return query if limit is None else query.limit(limit)
