"""Model page (``/dash/models/<name>``): time series, drift, quality, cost, comparison, runs.

One callback reads the model's results once and builds every figure from that frame.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl
from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards.app.components import status_badge, table, time_text
from dashboards.app.data import DashData, worst_by
from dashboards.app.figures import (
    DRIFT_SHOWN,
    PERFORMANCE_FAMILIES,
    comparison_figure,
    cost_figure,
    drift_figure,
    metric_figure,
    quality_figure,
    series_key,
    version_name,
)

__all__ = ["model_layout", "register_model_callbacks"]

RANGES: Any = [
    {"label": "last 24 hours", "value": 1},
    {"label": "last 7 days", "value": 7},
    {"label": "last 30 days", "value": 30},
    {"label": "last 90 days", "value": 90},
]
DEFAULT_DAYS = 30
RECENT_RUNS = 24
REPORT_PATH = "/v1/runs/{run_id}/report"
Options = Any  # Dash's option lists: [{label, value}]


def model_layout(data: DashData, name: str) -> html.Div:
    names = data.model_names()
    picker = dcc.Dropdown(
        id="model-picker",
        options=_options(names),
        value=name,
        clearable=False,
        style={"width": "300px"},
    )
    if name not in names:
        body: list[Any] = [html.P(f"unknown model {name!r}", id="model-missing")]
        return html.Div([html.H2("Model"), picker, *body])

    def control(label: str, component: Any) -> html.Label:
        return html.Label([label, component], style={"display": "inline-block", "margin": "4px"})

    def dropdown(cid: str, **kw: Any) -> dcc.Dropdown:
        return dcc.Dropdown(id=cid, clearable=False, style={"width": "260px"}, **kw)

    return html.Div(
        [
            html.H2(name, id="model-title"),
            dcc.Store(id="model-name", data=name),
            html.Div(
                [
                    control("model", picker),
                    control("range", dropdown("days", options=RANGES, value=DEFAULT_DAYS)),
                ]
            ),
            html.Div(id="model-summary"),
            html.H3("Metrics"),
            control("series", dropdown("series")),
            dcc.Graph(id="metric-graph"),
            html.Div(id="report-link"),
            html.H3("Drift"),
            html.Div(
                [
                    control("version", dropdown("version")),
                    control("drift metric", dropdown("drift-metric")),
                    control(
                        "show",
                        dcc.RadioItems(
                            id="drift-show",
                            options=_options(
                                list(DRIFT_SHOWN), [DRIFT_SHOWN[k] for k in DRIFT_SHOWN]
                            ),
                            value="value",
                            inline=True,
                        ),
                    ),
                ]
            ),
            dcc.Graph(id="drift-graph"),
            html.H3("Data quality"),
            dcc.Graph(id="quality-graph"),
            html.H3("Cost and latency"),
            dcc.Graph(id="cost-graph"),
            html.H3("Champion vs challenger"),
            control("figure", dropdown("comparison-label")),
            dcc.Graph(id="comparison-graph"),
            html.Div(id="comparison-table"),
            html.H3("Recent runs"),
            html.Div(id="runs-table"),
        ]
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


def _versions(versions: pl.DataFrame) -> tuple[Options, list[int], int | None]:
    """Version options, their ids, and the champion's id (the default choice)."""
    ids = versions["version_id"].to_list()
    names = versions["version"].to_list()
    aliases = versions["alias"].to_list()
    options = [
        {"label": version_name(v, a), "value": i}
        for i, v, a in zip(ids, names, aliases, strict=True)
    ]
    champion = next((i for i, a in zip(ids, aliases, strict=True) if a == "champion"), None)
    return options, ids, champion


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
        Output("model-summary", "children"),
        Output("series", "options"),
        Output("series", "value"),
        Output("metric-graph", "figure"),
        Output("version", "options"),
        Output("version", "value"),
        Output("drift-metric", "options"),
        Output("drift-metric", "value"),
        Output("drift-graph", "figure"),
        Output("quality-graph", "figure"),
        Output("cost-graph", "figure"),
        Output("comparison-label", "options"),
        Output("comparison-label", "value"),
        Output("comparison-graph", "figure"),
        Output("comparison-table", "children"),
        Output("runs-table", "children"),
        Input("model-name", "data"),
        Input("days", "value"),
        Input("series", "value"),
        Input("version", "value"),
        Input("drift-metric", "value"),
        Input("drift-show", "value"),
        Input("comparison-label", "value"),
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
        versions = data.versions(name)
        results = data.results(name, days, versions)
        keys, key_labels = _series(results)
        series = _pick(series, keys, series_key("accuracy", "", ""))
        version_options, version_ids, champion = _versions(versions)
        version = _pick(version, version_ids, champion)
        drift = results.filter(pl.col("family") == "drift")
        drift_metrics = sorted(drift["metric"].unique().to_list())
        drift_metric = _pick(drift_metric, drift_metrics, "data_drift")
        compared = results.filter(pl.col("family") == "comparison")
        comparison_labels = sorted(compared["label"].unique().to_list())
        comparison = _pick(comparison, comparison_labels, "accuracy")
        transitions = data.transitions(name)
        empty = "no results yet"
        return (
            _summary(results),
            _options(keys, key_labels),
            series,
            metric_figure(results, series or "||", data.policy_thresholds(name), transitions),
            version_options,
            version,
            _options(drift_metrics),
            drift_metric,
            drift_figure(drift, drift_metric or "", version or -1, drift_show or "value"),
            quality_figure(results, version or -1),
            cost_figure(results),
            _options(comparison_labels),
            comparison,
            comparison_figure(compared, comparison or ""),
            table("comparison-latest", _COMPARISON_COLUMNS, _comparison_rows(compared), empty),
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
