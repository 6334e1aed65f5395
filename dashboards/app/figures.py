"""Plotly figures built column-wise from the results frame of :meth:`DashData.results`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from dashboards.app.data import STATUS_ORDER, PolicyThreshold, worst_by

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
    "runs_figure",
    "series_key",
    "version_name",
]

SERIES_SEP = "|"
MAX_VERSIONS = 4  # lines per chart: with thresholds, band and alerts, 8 legend entries
MAX_QUALITY = 7  # checks drawn on the quality chart, besides the volume
LATENCY_SHOWN = "p95"
STATE_COLORS = {"firing": "#d62728", "pending": "#ff7f0e", "resolved": "#2ca02c"}
PERFORMANCE_FAMILIES = ("classification", "regression", "other")
ESTIMATED_PREFIX = "estimated_"
DRIFT_SHOWN = {  # what the drift heatmap can show: column name -> label
    "value": "statistic",
    "p_value": "p-value",
    "p_adjusted": "adjusted p-value",
    "drifted": "drifted after correction",
}
# plotly_white's layout without its per-trace-type defaults: each figure deep-copies its
# template, and the full one is most of the time spent building a figure.
_TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
    "height": 360,
    "template": _TEMPLATE,
    "legend": {"orientation": "h", "y": -0.15},
    "xaxis": {"type": "date"},
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


def _keep_first(part: pl.DataFrame) -> tuple[bool, bool, int]:
    alias = part["alias"][0]
    return alias != "champion", alias is None, -int(part["version_id"][0])


def _by_version(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Each version's rows, oldest version first: at most :data:`MAX_VERSIONS`, the
    champion, then the versions holding an alias, then the newest others."""
    parts = frame.sort("version_id", "window_start_us").partition_by(
        "version_id", maintain_order=True
    )
    kept = sorted(sorted(parts, key=_keep_first)[:MAX_VERSIONS], key=lambda p: p["version_id"][0])
    return [(version_name(p["version"][0], p["alias"][0]), p) for p in kept]


def _color(part: pl.DataFrame) -> str:
    """A version's colour, the same on every chart of the page."""
    return PALETTE[int(part["version_id"][0]) % len(PALETTE)]


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
    first_threshold = True
    for name, part in _by_version(rows):
        x = part["x"].to_numpy()
        fig.add_scatter(
            x=x,
            y=part["value"].to_numpy(),
            name=name,
            mode="lines",
            line={"color": _color(part)},
            **_hover(part),
        )
        if part["threshold"].is_not_null().any():
            fig.add_scatter(
                x=x,
                y=part["threshold"].to_numpy(),
                name="threshold",
                line={"dash": "dot", "width": 1, "color": "#7f7f7f"},
                legendgroup="threshold",
                showlegend=first_threshold,
                hovertemplate=f"%{{x}}<br>threshold %{{y}}<extra>{name}</extra>",
            )
            first_threshold = False
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
    x = part["x"].to_numpy()
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
    for i, (name, part) in enumerate(_by_version(rows)):
        fig.add_scatter(
            x=part["x"].to_numpy(),
            y=part["value"].to_numpy(),
            name="realized",
            mode="lines",
            line={"dash": "dash"},
            legendgroup="realized",
            showlegend=i == 0,
            customdata=part["run_id"].to_numpy(),
            hovertemplate=f"%{{x}}<br>%{{y}}<br>run %{{customdata}}<extra>realized {name}</extra>",
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
        x=shown["x"].to_numpy(),
        y=[1.0] * shown.height,
        yaxis="y2",
        mode="markers",
        name="alerts",
        marker={"symbol": "triangle-down", "size": 12, "color": colors},
        text=shown["text"].to_list(),
        hovertemplate="%{x}<br>%{text}<extra>alert</extra>",
    )
    fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False})


def _of_version(results: pl.DataFrame, version_id: int | None) -> pl.DataFrame:
    return results if version_id is None else results.filter(pl.col("version_id") == version_id)


def drift_figure(
    results: pl.DataFrame, metric: str, version_id: int | None, show: str
) -> go.Figure:
    """Heatmap feature by window of a drift metric's statistic, raw or adjusted p-value, or
    which columns drifted: in breach after the correction across columns and the effect
    floor, the verdict an alert uses. ``version_id`` None: ``results`` are one series
    already (the champion over time)."""
    title = f"{metric}: {DRIFT_SHOWN.get(show, show)} per feature and window"
    rows = _of_version(results, version_id).filter(
        (pl.col("metric") == metric) & (pl.col("column_name") != "")
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
        x=grid["x"].to_numpy(),
        y=features,
        z=grid.select(features).to_numpy().T,
        colorscale=scale,
        name=metric,
        zmin=0 if drifted else None,
        zmax=1 if drifted else None,
        showscale=not drifted,
    )
    return fig


def quality_figure(results: pl.DataFrame, version_id: int | None) -> go.Figure:
    """Per data-quality check, its worst column per window (the top :data:`MAX_QUALITY`
    checks by peak); event volume shaded on a second axis."""
    rows = _of_version(results, version_id).filter(pl.col("family") == "quality")
    if rows.is_empty():
        return empty_figure("data quality")
    worst = (
        rows.filter(pl.col("metric") != "volume")
        .sort("value", descending=True, nulls_last=True)
        .group_by("metric", "x", maintain_order=True)
        .first()
        .sort("metric", "x")
    )
    peaks = (
        worst.group_by("metric")
        .agg(pl.col("value").max())
        .sort("value", "metric", descending=[True, False], nulls_last=True)
    )
    shown = peaks["metric"].head(MAX_QUALITY).to_list()
    more = f", top {MAX_QUALITY} of {peaks.height} checks" if peaks.height > MAX_QUALITY else ""
    volume_axis = {"overlaying": "y", "side": "right", "showgrid": False, "title": "events"}
    title = f"data quality: worst column per check{more}"
    fig = go.Figure(layout={**_LAYOUT, "title": title, "yaxis2": volume_axis})
    volume = rows.filter(pl.col("metric") == "volume").sort("window_start_us")
    if not volume.is_empty():
        fig.add_scatter(
            x=volume["x"].to_numpy(),
            y=volume["value"].to_numpy(),
            name="volume",
            fill="tozeroy",
            mode="none",
            fillcolor="rgba(31,119,180,0.15)",
            yaxis="y2",
            **_hover(volume),
        )
    for metric in sorted(shown):
        part = worst.filter(pl.col("metric") == metric)
        fig.add_scatter(
            x=part["x"].to_numpy(),
            y=part["value"].to_numpy(),
            name=metric,
            mode="lines",
            customdata=part.select("run_id", "column_name").rows(),
            hovertemplate="%{x}<br>%{y} (%{customdata[1]})<br>run %{customdata[0]}"
            "<extra>%{fullData.name}</extra>",
        )
    return fig


# Two stacked charts sharing the time axis, laid out by hand: make_subplots builds and
# validates a default figure first, a third of the chart's build time.
_COST_AXES: dict[str, Any] = {
    "xaxis": {"type": "date", "anchor": "y", "matches": "x2", "showticklabels": False},
    "yaxis": {"domain": [0.55, 1.0], "title": f"latency {LATENCY_SHOWN} (ms)"},
    "xaxis2": {"type": "date", "anchor": "y2"},
    "yaxis2": {"domain": [0.0, 0.45], "title": "cost per 1k"},
}


def cost_figure(results: pl.DataFrame) -> go.Figure:
    """Latency p95 (top) and cost per 1k predictions (bottom), one colour and one legend
    entry per version."""
    rows = results.filter(
        ((pl.col("metric") == "latency") & (pl.col("label") == LATENCY_SHOWN))
        | (pl.col("metric") == "cost_per_1k")
    )
    if rows.is_empty():
        return empty_figure("cost and latency")
    fig = go.Figure(layout={**_LAYOUT, **_COST_AXES, "height": 520, "title": "cost and latency"})
    for name, part in _by_version(rows):
        for row, metric in ((1, "latency"), (2, "cost_per_1k")):
            series = part.filter(pl.col("metric") == metric)
            fig.add_scatter(
                x=series["x"].to_numpy(),
                y=series["value"].to_numpy(),
                name=name,
                mode="lines",
                line={"color": _color(part)},
                legendgroup=name,
                showlegend=row == 1,
                xaxis="x" if row == 1 else "x2",
                yaxis="y" if row == 1 else "y2",
                **_hover(series),
            )
    return fig


def comparison_figure(results: pl.DataFrame, label: str) -> go.Figure:
    """Challenger - champion for one comparison figure, its confidence interval shaded
    (a band, not an error bar per window: a month of windows draws in one path)."""
    title = f"challenger - champion: {label}"
    rows = results.filter((pl.col("family") == "comparison") & (pl.col("label") == label))
    if rows.is_empty():
        return empty_figure(title, "no champion vs challenger results")
    fig = go.Figure(layout={**_LAYOUT, "title": title})
    for name, part in _by_version(rows):
        x, color = part["x"].to_numpy(), _color(part)
        edge = {"width": 0, "color": color}
        for bound, fill in (("ci_high", None), ("ci_low", "tonexty")):
            fig.add_scatter(
                x=x,
                y=part[bound].to_numpy(),
                line=edge,
                fill=fill,
                opacity=0.2,
                legendgroup=name,
                showlegend=False,
                name=f"{name} interval",
                hovertemplate=f"%{{x}}<br>{bound} %{{y}}<extra>{name}</extra>",
            )
        fig.add_scatter(
            x=x,
            y=part["value"].to_numpy(),
            name=name,
            mode="lines",
            line={"color": color},
            legendgroup=name,
            **_hover(part),
        )
    fig.add_hline(y=0, line={"color": "#7f7f7f"})
    return fig


OUTCOME_COLORS = {
    "ok": "#2ca02c",
    "breach": "#d62728",
    "error": "#8c1c13",
    "no_baseline": "#bcbd22",
    "no_labels": "#17becf",
    "insufficient_data": "#c7c7c7",
    "not_applicable": "#e7e7e7",
}


def runs_figure(results: pl.DataFrame) -> go.Figure:
    """Evaluation runs per day (per hour over two days or less) by outcome: the worst
    status of each run's results, stacked."""
    if results.is_empty():
        return empty_figure("runs by outcome")
    start = pl.col("window_start_us")
    span = results.select(start.max() - start.min()).item()
    hourly = span <= 2 * 86_400 * 1_000_000
    bucket = pl.col("window").dt.truncate("1h" if hourly else "1d").dt.strftime("%Y-%m-%d %H:%M")
    runs = worst_by(results.select("run_id", "window", "status"), "run_id", "window")
    counts = runs.group_by(bucket.alias("bucket"), "status").len().sort("bucket")
    fig = go.Figure(
        layout={**_LAYOUT, "title": f"runs by outcome, per {'hour' if hourly else 'day'}"}
    )
    fig.update_layout(barmode="stack")
    for status in STATUS_ORDER[::-1]:
        part = counts.filter(pl.col("status") == status)
        if part.is_empty():
            continue
        fig.add_bar(
            x=part["bucket"].to_numpy(),
            y=part["len"].to_numpy(),
            name=status,
            marker={"color": OUTCOME_COLORS.get(status, "#7f7f7f")},
        )
    return fig
