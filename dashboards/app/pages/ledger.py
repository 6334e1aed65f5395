"""Ledger page (``/dash/ledger``): per model, its versions, alias moves and evaluations.

Read through :class:`~dashboards.app.data.DashData`, set-based across every model on
purpose, rather than from the per-model ledger (:mod:`modelwatch.store.ledger`, served
as ``GET /v1/models/{name}/ledger``), which takes several queries per model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from dash import dcc, html

from dashboards.app.components import ago, duration_text, status_badge, table
from dashboards.app.data import DashData
from modelwatch.timeutil import us_to_datetime

__all__ = ["ledger_layout"]

VERSION_COLUMNS = (
    "version",
    "alias",
    "registered",
    "by",
    "latest window",
    "status",
    "last evaluated",
    "reference rows",
    "reference age",
)
MOVE_COLUMNS = ("when", "alias", "from", "to", "by")


def _version_rows(part: pl.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for r in part.iter_rows(named=True):
        rows.append(
            {
                "version": r["version"],
                "alias": r["alias"] or "",
                "registered": r["created_at"],
                "by": r["created_by"],
                "latest window": us_to_datetime(r["latest_window_us"]),
                "status": status_badge(r["status"] or "no results"),
                "last evaluated": ago(r["last_evaluated"]),
                "reference rows": r["reference_rows"],
                "reference age": duration_text(r["reference_age"])
                if r["reference_age"] is not None
                else "no reference",
            }
        )
    return rows


def _move_rows(part: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "when": r["changed_at"],
            "alias": r["alias"],
            "from": r["from_version"] or "—",
            "to": r["to_version"],
            "by": r["changed_by"],
        }
        for r in part.reverse().iter_rows(named=True)
    ]


def ledger_layout(data: DashData, href: Callable[[str], str]) -> html.Div:
    ledger = data.ledger()
    moves = data.alias_moves()
    sections: list[Any] = [html.H2("Ledger")]
    for name in data.model_names():
        slug = name.replace(".", "-")
        versions = ledger.filter(pl.col("model") == name)
        history = moves.filter(pl.col("model") == name)
        sections += [
            html.H3(dcc.Link(name, href=href(f"/models/{name}"))),
            html.H4("Versions"),
            table(f"ledger-versions-{slug}", VERSION_COLUMNS, _version_rows(versions)),
            html.H4("Alias moves"),
            table(f"ledger-moves-{slug}", MOVE_COLUMNS, _move_rows(history), "no alias moves"),
        ]
    if len(sections) == 1:
        sections.append(html.P("no models registered yet"))
    return html.Div(sections, id="ledger")
