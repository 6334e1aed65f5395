"""Fleet overview (``/dash/``): every model, its versions, status, alerts and activity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dash import dcc, html

from dashboards.app.components import ago, status_badge, table
from dashboards.app.data import DashData
from dashboards.app.figures import version_name
from dashboards.app.status import NO_DATA, Headline

__all__ = ["fleet_layout"]

COLUMNS = ("model", "versions", "status", "firing alerts", "last evaluation", "events (24h)")


def fleet_layout(data: DashData, href: Callable[[str], str]) -> html.Div:
    versions = data.versions()
    headlines = data.headlines()
    activity = data.run_activity()
    firing = data.firing_counts()
    per_version = versions.join(activity, on="version_id", how="left")
    parts = per_version.partition_by("model", as_dict=True)
    no_versions = per_version.clear()  # a model registered without versions yet
    rows = []
    for name in sorted(data.model_names()):
        part = parts.get((name,), no_versions)
        last = part["last_evaluated"].max()
        last_at = last if isinstance(last, datetime) else None
        rows.append(
            {
                "model": dcc.Link(name, href=href(f"/models/{name}")),
                "versions": ", ".join(
                    version_name(v, a) for v, a in zip(part["version"], part["alias"], strict=True)
                ),
                "status": _badge(name, headlines.get(name, Headline(NO_DATA)), href),
                "firing alerts": firing.get(name, 0),
                "last evaluation": ago(last_at),
                "events (24h)": int(part["events_24h"].fill_null(0).sum()),
            }
        )
    return html.Div(
        [
            html.H2("Fleet"),
            table("fleet-table", COLUMNS, rows, empty="no models registered yet"),
        ]
    )


def _badge(name: str, status: Headline, href: Callable[[str], str]) -> dcc.Link:
    """The status, its reasons on hover; a click opens the model page, which lists them."""
    badge = status_badge(status.status, status.tooltip, f"status-{name}")
    return dcc.Link(badge, href=href(f"/models/{name}"))
