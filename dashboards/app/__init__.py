"""The Dash app: fleet, model, alerts and ledger pages, mounted at ``/dash/`` in the API.

Dash is a Flask (WSGI) app; :func:`mount_dash` serves it inside FastAPI through
a2wsgi's ``WSGIMiddleware`` behind :class:`~dashboards.app.auth.DashAuth`. The
pages read through :class:`~dashboards.app.data.DashData` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import dash_bootstrap_components as dbc
import flask
import orjson
from a2wsgi import WSGIMiddleware
from dash import Dash, Input, Output, dcc, html
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from dashboards.app.auth import DashAuth
from dashboards.app.data import DashData
from dashboards.app.pages.alerts import alerts_layout, register_alert_callbacks
from dashboards.app.pages.fleet import fleet_layout
from dashboards.app.pages.ledger import ledger_layout
from dashboards.app.pages.model import model_layout, register_model_callbacks
from modelwatch.auth import KeyStore
from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.http import error_body
from modelwatch.policies import PolicySpec
from modelwatch.store.engine import Store

__all__ = ["DASH_PATH", "create_dash", "mount_dash"]

DASH_PATH = "/dash"
log = logging.getLogger(__name__)
_NAV = (("Fleet", "/"), ("Alerts", "/alerts"), ("Ledger", "/ledger"))


def create_dash(
    store: Store,
    *,
    policies: Callable[[], list[PolicySpec]] = list,
    families: Mapping[str, str] | None = None,
    prefix: str = DASH_PATH,
) -> Dash:
    """The Dash app for ``store``, served by a WSGI server mounted at ``prefix``.

    ``policies`` returns the config's policies (thresholds drawn on charts);
    ``families`` maps metric keys to their family (drift, quality, cost, ...).
    """
    data = DashData(store, policies, families or {})
    base = prefix.rstrip("/") + "/"
    app = Dash(
        __name__,
        requests_pathname_prefix=base,
        routes_pathname_prefix="/",  # the mount strips the prefix before Flask sees a path
        title="modelwatch",
        suppress_callback_exceptions=True,
        serve_locally=True,
        update_title="",
    )

    def href(path: str) -> str:
        return base + path.lstrip("/")

    nav = html.Nav(
        [dcc.Link(label, href=href(path), className="nav-link") for label, path in _NAV],
        className="nav border-bottom mb-3",
    )
    app.layout = dbc.Container(
        [dcc.Location(id="url"), html.H1("modelwatch", className="mt-2"), nav, html.Div(id="page")],
        fluid=True,
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(pathname: str | None) -> Any:
        path = (pathname or base)[len(base) - 1 :] if (pathname or "").startswith(base) else "/"
        return _page(data, path.rstrip("/") or "/", href)

    register_model_callbacks(app, data, href)
    register_alert_callbacks(app, data)
    app.server.before_request(lambda: _refuse_malformed_callback(app))
    return app


_CALLBACK_PATH = "/_dash-update-component"


def _refuse_malformed_callback(app: Dash) -> flask.Response | None:
    """A callback request Dash itself would fail on (a 500) is the client's error: 422
    naming the field. Runs after :class:`DashAuth`, so only for authenticated callers."""
    if flask.request.path != _CALLBACK_PATH or flask.request.method != "POST":
        return None
    body = flask.request.get_json(silent=True)
    errors = callback_body_errors(body, app.callback_map)
    if not errors:
        return None
    payload = orjson.dumps(error_body(ValidationFailed(errors)))
    return flask.Response(payload, status=422, mimetype="application/json")


def callback_body_errors(body: object, callbacks: Mapping[str, Any]) -> list[FieldError]:
    """What is wrong with a Dash callback request body: an object naming a registered
    callback's ``output``, with as many ``inputs`` and ``state`` items as it declares."""
    if not isinstance(body, dict):
        return [FieldError(("body",), "must be a JSON object (a Dash callback request)")]
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        return [FieldError(("body", "output"), "must name a callback of this app", _text(output))]
    callback = callbacks[output]
    errors: list[FieldError] = []
    for key in ("inputs", "state"):
        items = body.get(key, [])
        expected = len(callback.get(key, []))
        if not isinstance(items, list) or len(items) != expected:
            errors.append(FieldError(("body", key), f"must be a list of {expected} items"))
            continue
        errors += [
            FieldError(("body", key, i), "must be an object with 'id' and 'property'")
            for i, item in enumerate(items)
            if not _dependency(item)
        ]
    if not isinstance(body.get("outputs", []), (dict, list)):
        errors.append(FieldError(("body", "outputs"), "must be an object or a list"))
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        errors.append(FieldError(("body", "changedPropIds"), "must be a list of strings"))
    return errors


def _dependency(item: object) -> bool:
    if isinstance(item, list):  # a pattern-matching input: a list of dependencies
        return all(isinstance(x, dict) and _dependency(x) for x in item)
    return isinstance(item, dict) and "id" in item and isinstance(item.get("property"), str)


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _page(data: DashData, path: str, href: Callable[[str], str]) -> Any:
    if path == "/":
        return fleet_layout(data, href)
    if path == "/alerts":
        return alerts_layout(data)
    if path == "/ledger":
        return ledger_layout(data, href)
    if path.startswith("/models/"):
        return model_layout(data, path.removeprefix("/models/"), href)
    return html.Div([html.H2("Not found"), html.P(f"no page at {path}")], id="not-found")


def mount_dash(
    api: FastAPI,
    store: Store,
    keys: KeyStore,
    *,
    policies: Callable[[], list[PolicySpec]] = list,
    families: Mapping[str, str] | None = None,
    path: str = DASH_PATH,
) -> Dash:
    """Serve the Dash app at ``path`` in ``api`` (with a redirect from ``path`` itself).

    ``keys`` is the API's key store: the app takes the same keys as the REST API.
    """
    dash_app = create_dash(store, policies=policies, families=families, prefix=path)
    wsgi = WSGIMiddleware(dash_app.server)  # type: ignore[arg-type]
    api.mount(path, DashAuth(wsgi, keys))  # type: ignore[arg-type]

    async def redirect() -> RedirectResponse:
        return RedirectResponse(path + "/")

    api.add_api_route(path, redirect, include_in_schema=False)
    return dash_app
