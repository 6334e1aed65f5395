"""Reading metric results back: by model, version, monitor, metric, time range, in pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store

__all__ = ["DEFAULT_ROWS", "MAX_ROWS", "ResultQuery", "query_results"]

DEFAULT_ROWS = 10_000
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
    limit: int = DEFAULT_ROWS
    monitor_id: int | None = None
    after: tuple[int | str, ...] | None = None  # (window_start_us, metric, id) of the last row


def query_results(store: Store, q: ResultQuery) -> list[dict[str, Any]]:
    """Results ordered by window, metric, id; only each window's current run by default.

    ``after`` starts past a row's sort key, so pages never skip or repeat a row.
    """
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
    if q.monitor_id is not None:
        query = query.where(m.c.monitor_id == q.monitor_id)
    if q.after is not None:
        start, metric, last_id = q.after
        query = query.where(
            or_(
                m.c.window_start_us > start,
                and_(m.c.window_start_us == start, m.c.metric > metric),
                and_(m.c.window_start_us == start, m.c.metric == metric, m.c.id > last_id),
            )
        )
    query = query.order_by(m.c.window_start_us, m.c.metric, m.c.id).limit(
        min(q.limit, MAX_ROWS + 1)
    )
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
