"""Reading metric results back: by model, version, metric, time range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store

__all__ = ["ResultQuery", "query_results"]

MAX_ROWS = 50_000


@dataclass(frozen=True)
class ResultQuery:
    version_ids: list[int]
    metric: str | None = None
    column: str | None = None
    segment: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    current_only: bool = True
    limit: int = 10_000


def query_results(store: Store, q: ResultQuery) -> list[dict[str, Any]]:
    """Results ordered by window then metric; only each window's current run by default."""
    m = t.metric_results
    query = select(m).where(m.c.version_id.in_(q.version_ids))
    if q.metric is not None:
        query = query.where(m.c.metric == q.metric)
    if q.column is not None:
        query = query.where(m.c.column_name == q.column)
    if q.segment is not None:
        query = query.where(m.c.segment == q.segment)
    if q.since_us is not None:
        query = query.where(m.c.window_start_us >= q.since_us)
    if q.until_us is not None:
        query = query.where(m.c.window_start_us < q.until_us)
    if q.current_only:
        query = query.where(m.c.current == 1)
    query = query.order_by(m.c.window_start_us, m.c.metric, m.c.id).limit(min(q.limit, MAX_ROWS))
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
