"""Alerts page (``/dash/alerts``): firing alerts, transition history, silences."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html, no_update

from dashboards.app.auth import current_principal
from dashboards.app.components import status_badge, table, time_text
from dashboards.app.data import DashData
from modelwatch.auth import silence_author
from modelwatch.domain import Scope
from modelwatch.durations import parse_duration
from modelwatch.policies import Matcher

__all__ = ["alerts_layout", "register_alert_callbacks"]

HISTORY_ROWS = 200
FIRING_COLUMNS = ("model", "version", "policy", "labels", "value", "threshold", "since")
HISTORY_COLUMNS = ("at", "model", "version", "policy", "from", "to", "cause")
SILENCE_COLUMNS = ("id", "matchers", "starts", "ends", "state", "created by", "comment")


def _firing(data: DashData) -> html.Table | html.P:
    rows = [
        {
            "model": r["model"],
            "version": r["version"],
            "policy": r["policy"],
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())),
            "value": r["value"],
            "threshold": r["threshold"],
            "since": time_text(r["started_at"]),
        }
        for r in data.firing().iter_rows(named=True)
    ]
    return table("firing-table", FIRING_COLUMNS, rows, empty="nothing is firing")


def _history(data: DashData) -> html.Table | html.P:
    rows = [
        {
            "at": r["at"],
            "model": r["model"],
            "version": r["version"],
            "policy": r["policy"],
            "from": r["from_state"],
            "to": status_badge(r["to_state"]),
            "cause": r["cause"],
        }
        for r in data.transitions(limit=HISTORY_ROWS).iter_rows(named=True)
    ]
    return table("history-table", HISTORY_COLUMNS, rows, empty="no alert transitions yet")


def _silences(data: DashData) -> html.Table | html.P:
    now = datetime.now(UTC)
    rows = [
        {
            "id": s.id,
            "matchers": ", ".join(f'{m.name}{m.op}"{m.value}"' for m in s.matchers),
            "starts": s.starts_at,
            "ends": s.ends_at,
            "state": s.state(now),
            "created by": s.created_by,
            "comment": s.comment,
        }
        for s in reversed(data.silences())
    ]
    return table("silences-table", SILENCE_COLUMNS, rows, empty="no silences")


def _field(label: str, component: Any, md: int = 6) -> dbc.Row:
    return dbc.Row(dbc.Col([dbc.Label(label), component], md=md), className="mb-2")


def alerts_layout(data: DashData) -> html.Div:
    form = html.Div(
        [
            _field(
                'matchers (comma-separated, e.g. model=churn, severity=~"crit.*")',
                dbc.Input(id="silence-matchers", type="text"),
            ),
            _field("duration (e.g. 30m, 2h, 1d)", dbc.Input(id="silence-duration", value="2h"), 3),
            _field("comment", dbc.Input(id="silence-comment", type="text")),
            _field("created by", dbc.Input(id="silence-creator", type="text"), 3),
            dbc.Button("Create silence", id="silence-submit", n_clicks=0, color="primary"),
            html.Div(id="silence-result", className="my-2"),
        ],
        id="silence-form",
    )
    return html.Div(
        [
            html.H2("Alerts"),
            html.H3("Firing"),
            _firing(data),
            html.H3("Silences"),
            html.Div(_silences(data), id="silences"),
            html.H4("New silence"),
            form,
            html.H3("History"),
            _history(data),
        ]
    )


def parse_silence_form(
    matchers: str | None, duration: str | None, comment: str | None, creator: str | None
) -> tuple[list[Matcher], int, str, str]:
    """The form's fields, checked; a ValueError names the field at fault."""
    parts = [p.strip() for p in (matchers or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("matchers: give at least one, e.g. model=churn")
    try:
        parsed = [Matcher.parse(p) for p in parts]
    except ValueError as exc:
        raise ValueError(f"matchers: {exc}") from None
    try:
        seconds = parse_duration((duration or "").strip())
    except ValueError as exc:
        raise ValueError(f"duration: {exc}") from None
    if seconds <= 0:
        raise ValueError("duration: must be longer than zero")
    if not (comment or "").strip():
        raise ValueError("comment: say why the alerts are silenced")
    if not (creator or "").strip():
        raise ValueError("created by: give your name")
    return parsed, seconds, (comment or "").strip(), (creator or "").strip()


def register_alert_callbacks(app: Dash, data: DashData) -> None:
    @app.callback(
        Output("silence-result", "children"),
        Output("silences", "children"),
        Input("silence-submit", "n_clicks"),
        State("silence-matchers", "value"),
        State("silence-duration", "value"),
        State("silence-comment", "value"),
        State("silence-creator", "value"),
        prevent_initial_call=True,
    )
    def create_silence(
        clicks: int,
        matchers: str | None,
        duration: str | None,
        comment: str | None,
        creator: str | None,
    ) -> tuple[Any, Any]:
        if not clicks:
            return no_update, no_update
        who = current_principal()
        if not who.allows(Scope.ADMIN):
            return _error(
                f"creating a silence needs an admin key; {who.name!r} has {who.scope.value!r}"
            ), no_update
        try:
            parsed, seconds, why, author = parse_silence_form(matchers, duration, comment, creator)
        except ValueError as exc:
            return _error(str(exc)), no_update
        silence = data.create_silence(parsed, seconds, silence_author(author, who), why)
        done = html.Span(
            f"silence {silence.id} created, until {time_text(silence.ends_at)}",
            id="silence-created",
            className="text-success",
        )
        return done, _silences(data)


def _error(message: str) -> html.Span:
    return html.Span(message, id="silence-error", className="text-danger")
