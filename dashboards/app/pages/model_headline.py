"""The model page's headline row: versions, status, performance, drift, cost, alerts.

Every figure is the champion's, from its latest window in the results already read
for the page; the status is :mod:`dashboards.app.status`'s, with its reasons listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash_bootstrap_components as dbc
import polars as pl
from dash import dcc, html

from dashboards.app.components import status_badge, time_text
from dashboards.app.figures import version_name
from dashboards.app.status import Headline

__all__ = ["PERFORMANCE_KEYS", "champion_latest", "headline_row"]

# The headline's performance figure: the first of these the champion has, realized
# figures before label-free estimates.
PERFORMANCE_KEYS = (
    "accuracy",
    "roc_auc",
    "f1",
    "mae",
    "rmse",
    "estimated_accuracy",
    "estimated_roc_auc",
    "estimated_mae",
)
DRIFT_NAMES_SHOWN = 5


def champion_latest(results: pl.DataFrame, metric: str) -> pl.DataFrame:
    """The champion's rows of ``metric`` in its newest window that has a value."""
    rows = results.filter(
        (pl.col("alias") == "champion")
        & (pl.col("metric") == metric)
        & pl.col("value").is_not_null()
    )
    if rows.is_empty():
        return rows
    return rows.filter(pl.col("window_start_us") == rows["window_start_us"].max())


def _performance(results: pl.DataFrame) -> str:
    for metric in PERFORMANCE_KEYS:
        rows = champion_latest(results, metric).filter(
            (pl.col("column_name") == "") & (pl.col("label") == "")
        )
        if rows.is_empty():
            continue
        r = rows.row(0, named=True)
        interval = "" if r["ci_low"] is None else f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
        return f"{metric} {r['value']:.3g}{interval} at {time_text(r['window'])}"
    return "no performance figure yet"


def _drifted(results: pl.DataFrame) -> str:
    rows = champion_latest(results, "data_drift").filter(pl.col("column_name") != "")
    if rows.is_empty():
        return "no drift results yet"
    drifted = sorted(rows.filter(pl.col("status") == "breach")["column_name"].to_list())
    names = ", ".join(drifted[:DRIFT_NAMES_SHOWN]) + (
        ", …" if len(drifted) > DRIFT_NAMES_SHOWN else ""
    )
    return f"{len(drifted)} of {rows.height}" + (f": {names}" if drifted else "")


def _cost(results: pl.DataFrame) -> str:
    rows = champion_latest(results, "cost_per_1k")
    return "—" if rows.is_empty() else f"{rows['value'][0]:.4g}"


def _card(title: str, body: Any, card_id: str) -> dbc.Col:
    content = [html.Div(title, className="text-muted small"), html.Div(body, id=card_id)]
    return dbc.Col(dbc.Card(dbc.CardBody(content)), md=4, lg=2, className="mb-2")


def _status(status: Headline, href: Callable[[str], str]) -> list[Any]:
    badge = status_badge(status.status, status.tooltip, "headline-status-badge")
    reasons = [html.Li(text) for text in status.reasons]
    return [badge, html.Ul(reasons, id="headline-reasons", className="small mb-0 ps-3")] + (
        [dcc.Link("alerts", href=href("/alerts"), className="small")] if reasons else []
    )


def headline_row(
    versions: pl.DataFrame,
    results: pl.DataFrame,
    status: Headline,
    firing: pl.DataFrame,
    href: Callable[[str], str],
) -> dbc.Row:
    """The headline cards; ``firing`` holds the model's firing alerts."""
    by_alias = dict(zip(versions["version"], versions["alias"], strict=True))
    champion = next((v for v, a in by_alias.items() if a == "champion"), None)
    others = [version_name(v, a) for v, a in by_alias.items() if a not in (None, "champion")]
    alerts = sorted(set(firing["policy"].to_list()))
    return dbc.Row(
        [
            _card(
                "versions",
                [
                    html.Div(f"champion {champion or 'none'}", id="headline-champion"),
                    html.Div(", ".join(others) or "no challenger", id="headline-challengers"),
                ],
                "headline-versions",
            ),
            _card("status", _status(status, href), "headline-status"),
            _card("latest performance", _performance(results), "headline-performance"),
            _card("drifted features", _drifted(results), "headline-drift"),
            _card("cost per 1k predictions", _cost(results), "headline-cost"),
            _card(
                "firing alerts",
                f"{firing.height}" + (f": {', '.join(alerts)}" if alerts else ""),
                "headline-alerts",
            ),
        ],
        id="model-headline",
        className="mt-2",
    )
