"""Small building blocks shared by the pages: tables, status badges, times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import dash_bootstrap_components as dbc
from dash import html

from modelwatch.timeutil import utcnow

__all__ = ["STATUS_CLASSES", "ago", "duration_text", "status_badge", "table", "time_text"]

STATUS_CLASSES = {  # Bootstrap's background classes
    "ok": "text-bg-success",
    "breach": "text-bg-danger",
    "error": "text-bg-danger",
    "firing": "text-bg-danger",
    "pending": "text-bg-warning",
    "resolved": "text-bg-success",
}


def time_text(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M}Z"


def duration_text(age: timedelta | None) -> str:
    if age is None:
        return "—"
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long before ``now`` (default: the current time) ``moment`` was, or ``never``."""
    if moment is None:
        return "never"
    return f"{duration_text((now or utcnow()) - moment)} ago"


def status_badge(status: str, title: str | None = None, badge_id: str | None = None) -> html.Span:
    """A coloured status; ``title`` (the reason) shows on hover."""
    extra: dict[str, Any] = {} if badge_id is None else {"id": badge_id}
    color = STATUS_CLASSES.get(status, "text-bg-secondary")
    css = f"badge {color} status status-{status.replace(' ', '-')}"
    return html.Span(status, className=css, title=title or status, **extra)


def table(
    table_id: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], empty: str = "none"
) -> dbc.Table | html.P:
    """A table; cells may be strings, numbers or Dash components."""
    if not rows:
        return html.P(empty, id=table_id, className="empty text-muted")
    head = html.Thead(html.Tr([html.Th(c) for c in columns]))
    body = html.Tbody([html.Tr([html.Td(_cell(row.get(c))) for c in columns]) for row in rows])
    return dbc.Table([head, body], id=table_id, size="sm", hover=True, className="w-auto")


def _cell(value: Any) -> Any:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return time_text(value)
    return value
