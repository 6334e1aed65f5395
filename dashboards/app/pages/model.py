"""Model page (``/dash/models/<name>``): headline, time series, drift, quality, cost,
comparison, runs.

:func:`render_page` reads the model's results once and builds every part from that
frame: for the layout when the page opens (so it arrives drawn in one round trip), then
in one callback whenever a control changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dash_bootstrap_components as dbc
import polars as pl
from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards.app.components import status_badge, table, time_text
from dashboards.app.data import DashData, champion_over_time, worst_by
from dashboards.app.figures import (
    DRIFT_SHOWN,
    PERFORMANCE_FAMILIES,
    comparison_figure,
    cost_figure,
    drift_figure,
    metric_figure,
    quality_figure,
    runs_figure,
    series_key,
    version_name,
)
from dashboards.app.pages.model_headline import headline_row

__all__ = ["model_layout", "register_model_callbacks"]

RANGES: Any = [
    {"label": "last 24 hours", "value": 1},
    {"label": "last 7 days", "value": 7},
    {"label": "last 30 days", "value": 30},
    {"label": "last 90 days", "value": 90},
]
DEFAULT_DAYS = 30
RECENT_RUNS = 24
CHAMPION_OVER_TIME = 0  # the version choice "champion": whichever version held it when
REPORT_PATH = "/v1/runs/{run_id}/report"
Options = Any  # Dash's option lists: [{label, value}]


def model_layout(data: DashData, name: str, href: Callable[[str], str]) -> html.Div:
    """The page with its first render in place: the browser draws once, with no second
    round trip and no empty graphs drawn first."""
    names = data.model_names()
    picker = dcc.Dropdown(id="model-picker", options=_options(names), value=name, clearable=False)
    if name not in names:
        body: list[Any] = [html.P(f"unknown model {name!r}", id="model-missing")]
        return html.Div([html.H2("Model"), picker, *body])
    first = dict(zip(OUTPUTS, render_page(data, href, name, DEFAULT_DAYS), strict=True))

    def div(cid: str, **kw: Any) -> html.Div:
        return html.Div(first[(cid, "children")], id=cid, **kw)

    def graph(cid: str) -> dcc.Graph:
        return dcc.Graph(id=cid, figure=first[(cid, "figure")])

    def dropdown(cid: str) -> dcc.Dropdown:
        return _dropdown(cid, options=first[(cid, "options")], value=first[(cid, "value")])

    days = _dropdown("days", options=RANGES, value=DEFAULT_DAYS)
    comparison = _controls(("figure", dropdown("comparison-label")))
    return html.Div(
        [
            html.H2(name, id="model-title"),
            dcc.Store(id="model-name", data=name),
            _controls(("model", picker), ("range", days)),
            div("model-summary", className="text-muted small"),
            div("model-headline-row"),
            *_section("Metrics", _controls(("series", dropdown("series")))),
            graph("metric-graph"),
            html.Div(id="report-link"),
            *_section("Drift", _drift_controls(dropdown("version"), dropdown("drift-metric"))),
            graph("drift-graph"),
            dbc.Row(
                [
                    dbc.Col([*_section("Data quality"), graph("quality-graph")], lg=6),
                    dbc.Col([*_section("Cost and latency"), graph("cost-graph")], lg=6),
                ]
            ),
            *_section("Champion vs challenger", comparison),
            graph("comparison-graph"),
            div("comparison-table"),
            *_section("Runs"),
            graph("runs-graph"),
            div("runs-table"),
        ]
    )


def _dropdown(cid: str, **kw: Any) -> dcc.Dropdown:
    return dcc.Dropdown(id=cid, clearable=False, **kw)


def _controls(*labelled: tuple[str, Any]) -> dbc.Row:
    return dbc.Row(
        [dbc.Col([dbc.Label(label), c], md=4, lg=3) for label, c in labelled], className="mb-2"
    )


def _section(title: str, *below: Any) -> list[Any]:
    return [html.H3(title, className="mt-4"), *below]


def _drift_controls(version: dcc.Dropdown, metric: dcc.Dropdown) -> dbc.Row:
    shown = dcc.RadioItems(
        id="drift-show",
        options=_options(list(DRIFT_SHOWN), [DRIFT_SHOWN[k] for k in DRIFT_SHOWN]),
        value="value",
        inline=True,
        inputClassName="me-1",
        labelClassName="me-3",
    )
    return _controls(
        ("version", version),
        ("drift metric", metric),
        ("show", shown),
    )


def _options(values: list[str], labels: list[str] | None = None) -> Options:
    return [{"label": lab, "value": v} for v, lab in zip(values, labels or values, strict=True)]


def _pick(current: Any, values: list[Any], preferred: Any = None) -> Any:
    if current in values:
        return current
    if preferred in values:
        return preferred
    return values[0] if values else None


def _series(results: pl.DataFrame) -> tuple[list[str], list[str]]:
    rows = (
        results.filter(
            pl.col("family").is_in([*PERFORMANCE_FAMILIES, "estimation"])
            # whole-window drift: the drifted share and the multivariate scores
            | ((pl.col("family") == "drift") & (pl.col("column_name") == ""))
        )
        .filter(pl.col("metric") != "confusion_matrix")
        .select("metric", "column_name", "label")
        .unique()
        .sort("metric", "column_name", "label")
    )
    keys = [series_key(*r) for r in rows.iter_rows()]
    labels = [k.replace("|", " ").strip() for k in keys]
    return keys, labels


def _versions(versions: pl.DataFrame) -> tuple[Options, list[int]]:
    """Version options and their values: first the champion over time (the default),
    then each version."""
    ids = versions["version_id"].to_list()
    names = versions["version"].to_list()
    aliases = versions["alias"].to_list()
    options = [{"label": "champion (whichever held it)", "value": CHAMPION_OVER_TIME}] + [
        {"label": version_name(v, a), "value": i}
        for i, v, a in zip(ids, names, aliases, strict=True)
    ]
    return options, [CHAMPION_OVER_TIME, *ids]


def _comparison_rows(results: pl.DataFrame) -> list[dict[str, Any]]:
    rows = results.filter(pl.col("family") == "comparison")
    if rows.is_empty():
        return []
    latest = rows.sort("window_start_us").group_by("version_id", "metric", "label").last()
    return [
        {
            "version": version_name(r["version"], r["alias"]),
            "figure": f"{r['metric']} [{r['label']}]",
            "window": r["window"],
            "challenger - champion": r["value"],
            "interval": "—" if r["ci_low"] is None else f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]",
            "p-value": r["p_value"],
            "n": r["n"],
            "status": status_badge(r["status"]),
        }
        for r in latest.sort("version_id", "label").iter_rows(named=True)
    ]


def _run_rows(results: pl.DataFrame) -> list[dict[str, Any]]:
    if results.is_empty():
        return []
    runs = worst_by(results, "run_id").join(
        results.group_by("run_id").agg(
            pl.col("window").first(), pl.col("version").first(), pl.col("alias").first()
        ),
        on="run_id",
    )
    recent = runs.sort("window", "run_id", descending=True).head(RECENT_RUNS)
    return [
        {
            "window": r["window"],
            "version": version_name(r["version"], r["alias"]),
            "status": status_badge(r["status"]),
            "report": html.A(
                f"run {r['run_id']} report",
                href=REPORT_PATH.format(run_id=r["run_id"]),
                target="_blank",
            ),
        }
        for r in recent.iter_rows(named=True)
    ]


def _summary(results: pl.DataFrame) -> html.Div:
    if results.is_empty():
        return html.Div("no evaluation results yet", className="summary")
    newest = results["window"].max()
    windows = results["window_start_us"].n_unique()
    latest = time_text(newest if isinstance(newest, datetime) else None)
    return html.Div(f"{windows} windows, newest {latest}", className="summary")


def register_model_callbacks(app: Dash, data: DashData, href: Callable[[str], str]) -> None:
    @app.callback(
        Output("url", "pathname"),
        Input("model-picker", "value"),
        State("url", "pathname"),
        prevent_initial_call=True,
    )
    def pick_model(name: str | None, current: str | None) -> Any:
        target = href(f"/models/{name}")
        return no_update if not name or target == current else target

    @app.callback(
        Output("report-link", "children"),
        Input("metric-graph", "clickData"),
        prevent_initial_call=True,
    )
    def report_link(click: dict[str, Any] | None) -> Any:
        points = (click or {}).get("points") or []
        run_id = points[0].get("customdata") if points else None
        if run_id is None:
            return no_update
        link = html.A(f"drill-down report for run {run_id}", href=REPORT_PATH.format(run_id=run_id))
        return html.Span(["Selected window: ", link])

    @app.callback(
        *(Output(cid, prop) for cid, prop in OUTPUTS),
        Input("model-name", "data"),
        Input("days", "value"),
        Input("series", "value"),
        Input("version", "value"),
        Input("drift-metric", "value"),
        Input("drift-show", "value"),
        Input("comparison-label", "value"),
        prevent_initial_call=True,  # the layout holds the first render
    )
    def render(
        name: str,
        days: int | None,
        series: str | None,
        version: int | None,
        drift_metric: str | None,
        drift_show: str,
        comparison: str | None,
    ) -> tuple[Any, ...]:
        picked = Picked(series, version, drift_metric, drift_show or "value", comparison)
        return render_page(data, href, name, days, picked)


OUTPUTS = (
    ("model-summary", "children"),
    ("model-headline-row", "children"),
    ("series", "options"),
    ("series", "value"),
    ("metric-graph", "figure"),
    ("version", "options"),
    ("version", "value"),
    ("drift-metric", "options"),
    ("drift-metric", "value"),
    ("drift-graph", "figure"),
    ("quality-graph", "figure"),
    ("cost-graph", "figure"),
    ("comparison-label", "options"),
    ("comparison-label", "value"),
    ("comparison-graph", "figure"),
    ("comparison-table", "children"),
    ("runs-graph", "figure"),
    ("runs-table", "children"),
)


@dataclass(frozen=True)
class Picked:
    """What the page's controls ask for; None: the default."""

    series: str | None = None
    version: int | None = None
    drift_metric: str | None = None
    drift_show: str = "value"
    comparison: str | None = None


def render_page(
    data: DashData,
    href: Callable[[str], str],
    name: str,
    days: int | None,
    picked: Picked = Picked(),
) -> tuple[Any, ...]:
    """Every part of the page that depends on the data, in :data:`OUTPUTS`' order."""
    versions = data.versions(name)
    results = data.results(name, days, versions)
    keys, key_labels = _series(results)
    series = _pick(picked.series, keys, series_key("accuracy", "", ""))
    version_options, version_ids = _versions(versions)
    version = _pick(picked.version, version_ids, CHAMPION_OVER_TIME)
    if version == CHAMPION_OVER_TIME:
        chosen, chosen_id = champion_over_time(results, data.alias_moves(name)), None
    else:
        chosen, chosen_id = results, version
    drift = chosen.filter(pl.col("family") == "drift")
    drift_metrics = sorted(drift["metric"].unique().to_list())
    drift_metric = _pick(picked.drift_metric, drift_metrics, "data_drift")
    compared = results.filter(pl.col("family") == "comparison")
    comparison_labels = sorted(compared["label"].unique().to_list())
    comparison = _pick(picked.comparison, comparison_labels, "accuracy")
    firing = data.firing().filter(pl.col("model") == name)
    empty = "no results yet"
    return (
        _summary(results),
        headline_row(versions, results, data.headlines(name)[name], firing, href),
        _options(keys, key_labels),
        series,
        metric_figure(
            results, series or "||", data.policy_thresholds(name), data.transitions(name)
        ),
        version_options,
        version,
        _options(drift_metrics),
        drift_metric,
        drift_figure(drift, drift_metric or "", chosen_id, picked.drift_show),
        quality_figure(chosen, chosen_id),
        cost_figure(results),
        _options(comparison_labels),
        comparison,
        comparison_figure(compared, comparison or ""),
        table("comparison-latest", _COMPARISON_COLUMNS, _comparison_rows(compared), empty),
        runs_figure(results),
        table("runs", _RUN_COLUMNS, _run_rows(results), empty),
    )


_COMPARISON_COLUMNS = (
    "version",
    "figure",
    "window",
    "challenger - champion",
    "interval",
    "p-value",
    "n",
    "status",
)
_RUN_COLUMNS = ("window", "version", "status", "report")
