"""Fleet overview (``/dash/``): every model, its versions, status, alerts and activity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dash import dcc, html

from dashboards.app.components import ago, status_badge, table
from dashboards.app.data import DashData, worst_by
from dashboards.app.figures import version_name

__all__ = ["fleet_layout"]

COLUMNS = ("model", "versions", "status", "firing alerts", "last evaluation", "events (24h)")


def fleet_layout(data: DashData, href: Callable[[str], str]) -> html.Div:
    versions = data.versions()
    statuses = data.latest_statuses()
    activity = data.run_activity()
    firing = data.firing_counts()
    per_version = versions.join(activity, on="version_id", how="left")
    worst = worst_by(
        statuses.join(versions.select("version_id", "model"), on="version_id"), "model"
    )
    status_of = dict(zip(worst["model"], worst["status"], strict=True))
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
                "status": status_badge(status_of.get(name, "no results")),
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
