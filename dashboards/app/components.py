"""Small building blocks shared by the pages: tables, status badges, times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dash import html

from modelwatch.timeutil import utcnow

__all__ = ["STATUS_COLORS", "ago", "duration_text", "status_badge", "table", "time_text"]

STATUS_COLORS = {
    "ok": "#2ca02c",
    "breach": "#d62728",
    "error": "#8c1c13",
    "firing": "#d62728",
    "pending": "#ff7f0e",
    "resolved": "#2ca02c",
}
_CELL = {"padding": "4px 10px", "borderBottom": "1px solid #ddd", "textAlign": "left"}


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


def status_badge(status: str) -> html.Span:
    color = STATUS_COLORS.get(status, "#7f7f7f")
    style = {"color": "white", "background": color, "padding": "1px 6px", "borderRadius": "3px"}
    return html.Span(status, className=f"status status-{status}", style=style)


def table(
    table_id: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], empty: str = "none"
) -> html.Table | html.P:
    """An HTML table; cells may be strings, numbers or Dash components."""
    if not rows:
        return html.P(empty, id=table_id, className="empty")
    head = html.Thead(html.Tr([html.Th(c, style=_CELL) for c in columns]))
    body = html.Tbody(
        [html.Tr([html.Td(_cell(row.get(c)), style=_CELL) for c in columns]) for row in rows]
    )
    return html.Table([head, body], id=table_id, style={"borderCollapse": "collapse"})


def _cell(value: Any) -> Any:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return time_text(value)
    return value
