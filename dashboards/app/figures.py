"""Plotly figures built column-wise from the results frame of :meth:`DashData.results`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from dashboards.app.data import PolicyThreshold

__all__ = [
    "DRIFT_SHOWN",
    "ESTIMATED_PREFIX",
    "SERIES_SEP",
    "comparison_figure",
    "cost_figure",
    "drift_figure",
    "empty_figure",
    "metric_figure",
    "quality_figure",
    "series_key",
    "version_name",
]

SERIES_SEP = "|"
STATE_COLORS = {"firing": "#d62728", "pending": "#ff7f0e", "resolved": "#2ca02c"}
PERFORMANCE_FAMILIES = ("classification", "regression", "other")
ESTIMATED_PREFIX = "estimated_"
DRIFT_SHOWN = {  # what the drift heatmap can show: column name -> label
    "value": "statistic",
    "p_value": "p-value",
    "p_adjusted": "adjusted p-value",
    "drifted": "drifted after correction",
}
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
    "height": 360,
    "template": "plotly_white",
    "legend": {"orientation": "h", "y": -0.15},
}


def series_key(metric: str, column: str, label: str) -> str:
    return SERIES_SEP.join((metric, column, label))


def _series_name(metric: str, column: str, label: str) -> str:
    return metric + (f" · {column}" if column else "") + (f" [{label}]" if label else "")


def version_name(version: str, alias: str | None) -> str:
    return f"{version} ({alias})" if alias else version


def empty_figure(title: str, message: str = "no results yet") -> go.Figure:
    fig = go.Figure(layout={**_LAYOUT, "title": title})
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _by_version(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    parts = frame.sort("version_id", "window_start_us").partition_by(
        "version_id", maintain_order=True
    )
    return [(version_name(p["version"][0], p["alias"][0]), p) for p in parts]


def _hover(part: pl.DataFrame) -> dict[str, Any]:
    return {
        "customdata": part["run_id"].to_numpy(),
        "hovertemplate": "%{x}<br>%{y}<br>run %{customdata}<extra>%{fullData.name}</extra>",
    }


def metric_figure(
    results: pl.DataFrame,
    key: str,
    thresholds: Sequence[PolicyThreshold],
    transitions: pl.DataFrame,
) -> go.Figure:
    """One line per version for the series ``key``, its thresholds and alert markers."""
    metric, column, label = key.split(SERIES_SEP)
    title = _series_name(metric, column, label)
    rows = results.filter(
        (pl.col("metric") == metric)
        & (pl.col("column_name") == column)
        & (pl.col("label") == label)
    )
    if rows.is_empty():
        return empty_figure(title)
    fig = go.Figure(layout={**_LAYOUT, "title": title})
    _band(fig, rows)
    for name, part in _by_version(rows):
        x = part["x"].to_list()
        fig.add_scatter(x=x, y=part["value"].to_numpy(), name=name, mode="lines", **_hover(part))
        if part["threshold"].is_not_null().any():
            dash = {"dash": "dot", "width": 1}
            fig.add_scatter(
                x=x, y=part["threshold"].to_numpy(), name=f"threshold {name}", line=dash
            )
    for rule in thresholds:
        if rule.metric == metric and (rule.column or "") == column and (rule.label or "") == label:
            fig.add_hline(
                y=rule.value,
                line={"dash": "dash", "color": "#7f7f7f"},
                annotation_text=f"{rule.policy}: {rule.op} {rule.value:g}",
            )
    _realized(fig, results, metric, column, label)
    _alert_markers(fig, transitions)
    return fig


def _band(fig: go.Figure, rows: pl.DataFrame) -> None:
    """The champion's threshold band learnt from its reference, shaded: one legend entry
    ("band") whatever the number of versions, so the legend stays short."""
    banded = rows.filter(pl.col("band_low").is_not_null() & pl.col("band_high").is_not_null())
    if banded.is_empty():
        return
    champion = banded.filter(pl.col("alias") == "champion")
    part = (
        champion
        if not champion.is_empty()
        else banded.filter(pl.col("version_id") == banded["version_id"].max())
    )
    x = part["x"].to_list()
    line = {"width": 0}
    fig.add_scatter(
        x=x,
        y=part["band_high"].to_numpy(),
        line=line,
        showlegend=False,
        hoverinfo="skip",
        legendgroup="band",
        name="band",
    )
    fig.add_scatter(
        x=x,
        y=part["band_low"].to_numpy(),
        line=line,
        fill="tonexty",
        fillcolor="rgba(127,127,127,0.18)",
        name="band",
        legendgroup="band",
        hovertemplate="%{x}<br>band low %{y}<extra></extra>",
    )


def _realized(fig: go.Figure, results: pl.DataFrame, metric: str, column: str, label: str) -> None:
    """Beside a label-free estimate, the realized figure of the same windows (dashed),
    once labels have joined: the estimate's track record at a glance."""
    if not metric.startswith(ESTIMATED_PREFIX):
        return
    same = results.filter(
        (pl.col("metric") == metric.removeprefix(ESTIMATED_PREFIX))
        & (pl.col("column_name") == column)
        & pl.col("value").is_not_null()
    )
    rows = same.filter(pl.col("label") == label)
    if rows.is_empty():  # a binary estimate's label names the positive class
        rows = same.filter(pl.col("label") == "")
    for name, part in _by_version(rows):
        fig.add_scatter(
            x=part["x"].to_list(),
            y=part["value"].to_numpy(),
            name=f"realized {name}",
            mode="lines",
            line={"dash": "dash"},
            **_hover(part),
        )


def _alert_markers(fig: go.Figure, transitions: pl.DataFrame) -> None:
    if transitions.is_empty():
        return
    text = (
        (pl.col("policy") + " " + pl.col("version").fill_null("") + ": ")
        + pl.col("from_state")
        + " → "
        + pl.col("to_state")
        + "<br>"
        + pl.col("cause")
    )
    shown = transitions.with_columns(text.alias("text"))
    colors = shown["to_state"].replace_strict(STATE_COLORS, default="#7f7f7f").to_list()
    fig.add_scatter(
        x=shown["x"].to_list(),
        y=[1.0] * shown.height,
        yaxis="y2",
        mode="markers",
        name="alerts",
        marker={"symbol": "triangle-down", "size": 12, "color": colors},
        text=shown["text"].to_list(),
        hovertemplate="%{x}<br>%{text}<extra>alert</extra>",
    )
    fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False})


def drift_figure(results: pl.DataFrame, metric: str, version_id: int, show: str) -> go.Figure:
    """Heatmap feature by window of a drift metric's statistic, raw or adjusted p-value, or
    which columns drifted: in breach after the correction across columns and the effect
    floor, the verdict an alert uses."""
    title = f"{metric}: {DRIFT_SHOWN.get(show, show)} per feature and window"
    rows = results.filter(
        (pl.col("metric") == metric)
        & (pl.col("version_id") == version_id)
        & (pl.col("column_name") != "")
    )
    if rows.is_empty():
        return empty_figure(title)
    drifted = show == "drifted"
    if drifted:
        rows = rows.with_columns((pl.col("status") == "breach").cast(pl.Int8).alias("drifted"))
    grid = rows.pivot(on="column_name", index="x", values=show, aggregate_function="first").sort(
        "x"
    )
    features = [c for c in grid.columns if c != "x"]
    fig = go.Figure(layout={**_LAYOUT, "title": title, "height": 120 + 24 * len(features)})
    scale: Any = [[0, "#f0f0f0"], [1, "#d62728"]] if drifted else "Reds"
    if show in ("p_value", "p_adjusted"):
        scale = "Reds_r"
    fig.add_heatmap(
        x=grid["x"].to_list(),
        y=features,
        z=grid.select(features).to_numpy().T,
        colorscale=scale,
        name=metric,
        zmin=0 if drifted else None,
        zmax=1 if drifted else None,
        showscale=not drifted,
    )
    return fig


def quality_figure(results: pl.DataFrame, version_id: int) -> go.Figure:
    """Data-quality rates per column as lines; event volume as bars on a second axis."""
    rows = results.filter((pl.col("family") == "quality") & (pl.col("version_id") == version_id))
    if rows.is_empty():
        return empty_figure("data quality")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(**_LAYOUT, title="data quality")
    for (metric, column, label), part in rows.sort("window_start_us").group_by(
        "metric", "column_name", "label", maintain_order=True
    ):
        name = _series_name(str(metric), str(column), str(label))
        x, y = part["x"].to_list(), part["value"].to_numpy()
        if metric == "volume":
            fig.add_bar(x=x, y=y, name=name, opacity=0.3, secondary_y=True, **_hover(part))
        else:
            fig.add_scatter(x=x, y=y, name=name, mode="lines", secondary_y=False, **_hover(part))
    return fig


def cost_figure(results: pl.DataFrame) -> go.Figure:
    """Latency quantiles (top) and cost/resources per 1k predictions (bottom), per version."""
    rows = results.filter(pl.col("family") == "cost")
    if rows.is_empty():
        return empty_figure("cost and latency")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("latency", "cost"))
    fig.update_layout(**{**_LAYOUT, "height": 520}, title="cost and latency")
    for name, part in _by_version(rows):
        for (metric, column, label), series in part.group_by(
            "metric", "column_name", "label", maintain_order=True
        ):
            fig.add_scatter(
                x=series["x"].to_list(),
                y=series["value"].to_numpy(),
                name=f"{_series_name(str(metric), str(column), str(label))} {name}",
                mode="lines",
                row=1 if metric == "latency" else 2,
                col=1,
                **_hover(series),
            )
    return fig


def comparison_figure(results: pl.DataFrame, label: str) -> go.Figure:
    """Challenger - champion for one comparison figure, with its confidence interval."""
    title = f"challenger - champion: {label}"
    rows = results.filter((pl.col("family") == "comparison") & (pl.col("label") == label))
    if rows.is_empty():
        return empty_figure(title, "no champion vs challenger results")
    fig = go.Figure(layout={**_LAYOUT, "title": title})
    for name, part in _by_version(rows):
        value = part["value"]
        fig.add_scatter(
            x=part["x"].to_list(),
            y=value.to_numpy(),
            name=name,
            mode="lines+markers",
            error_y={
                "type": "data",
                "array": (part["ci_high"] - value).to_numpy(),
                "arrayminus": (value - part["ci_low"]).to_numpy(),
                "thickness": 1,
            },
            **_hover(part),
        )
    fig.add_hline(y=0, line={"color": "#7f7f7f"})
    return fig
