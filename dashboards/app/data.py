"""Everything the Dash pages read or write, in one place, as set-based queries into polars.

Pages never touch the store themselves. Every read is one query per page section
(never one per point) and comes back as a polars frame. The ledger page reads here,
set-based across every model, on purpose: the per-model ledger
(:class:`modelwatch.store.ledger.Ledger`, ``GET /v1/models/{name}/ledger``) would take
several queries per model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Select, exists, func, select

from dashboards.app.status import Breach, Headline, breach_counts, check_options, headline
from modelwatch.policies import Condition, Matcher, PolicySpec
from modelwatch.store import tables as t
from modelwatch.store.alerts import FIRING, PENDING, AlertRecord, AlertStore, SilenceRecord
from modelwatch.store.engine import Store
from modelwatch.store.frames import fetch
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import Registry
from modelwatch.timeutil import utcnow

__all__ = [
    "STATUS_ORDER",
    "X_FORMAT",
    "DashData",
    "PolicyThreshold",
    "champion_over_time",
    "worst_by",
]

DAY_US = 86_400 * 1_000_000
X_FORMAT = "%Y-%m-%d %H:%M"  # UTC, as plotly reads date strings (alert transitions)
# Worst first: the fleet shows a model's worst latest status.
STATUS_ORDER = (
    "error",
    "breach",
    "no_baseline",
    "no_labels",
    "insufficient_data",
    "not_applicable",
    "ok",
)
RESULT_COLUMNS = (
    "run_id",
    "version_id",
    "window_start_us",
    "metric",
    "column_name",
    "label",
    "value",
    "p_value",
    "p_adjusted",
    "ci_low",
    "ci_high",
    "threshold",
    "band_low",
    "band_high",
    "n",
    "status",
)
RESULT_SCHEMA: dict[str, Any] = {
    "run_id": pl.Int64,
    "version_id": pl.Int64,
    "window_start_us": pl.Int64,
    "metric": pl.String,
    "column_name": pl.String,
    "label": pl.String,
    "value": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "threshold": pl.Float64,
    "band_low": pl.Float64,
    "band_high": pl.Float64,
    "n": pl.Int64,
    "status": pl.String,
}


def worst_by(statuses: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """The worst ``status`` per ``keys`` (unknown statuses rank as ``ok``)."""
    rank = pl.col("status").replace_strict(
        STATUS_ORDER, range(len(STATUS_ORDER)), default=len(STATUS_ORDER) - 1
    )
    return (
        statuses.group_by(*keys)
        .agg(rank.min().alias("rank"))
        .with_columns(
            pl.col("rank")
            .replace_strict(range(len(STATUS_ORDER)), STATUS_ORDER, return_dtype=pl.String)
            .alias("status")
        )
        .drop("rank")
    )


def champion_over_time(results: pl.DataFrame, moves: pl.DataFrame) -> pl.DataFrame:
    """The rows of whichever version was champion at each window's start, so a view of
    the champion keeps its range across a promotion. ``moves`` are the model's alias
    moves (:meth:`DashData.alias_moves`); windows before the first champion count as
    its."""
    champions = (
        moves.filter(pl.col("alias") == "champion")
        .select(pl.col("changed_at").alias("window"), pl.col("to_version").alias("held_by"))
        .sort("window")
    )
    if champions.is_empty():
        return results.filter(pl.col("alias") == "champion")
    first = champions["held_by"][0]
    held = (
        results.sort("window")
        .join_asof(champions, on="window", strategy="backward")
        .with_columns(pl.col("held_by").fill_null(first))
    )
    return held.filter(pl.col("version") == pl.col("held_by")).drop("held_by")


@dataclass(frozen=True)
class PolicyThreshold:
    """A policy's ``threshold`` condition, drawn as a line on the metric's chart."""

    policy: str
    metric: str
    column: str | None
    label: str | None
    op: str
    value: float


def _thresholds(policy: PolicySpec, condition: Condition) -> list[PolicyThreshold]:
    found = []
    if condition.threshold is not None:
        c = condition.threshold
        found.append(PolicyThreshold(policy.name, c.metric, c.column, c.label, c.op, c.value))
    for child in (condition.all or []) + (condition.any or []):
        found += _thresholds(policy, child)
    return found


def _alert_text(alert: AlertRecord) -> str:
    version = alert.labels.get("version")
    text = alert.policy + (f" on {version}" if version else "")
    if alert.value is not None:
        text += f" (value {alert.value:.4g}"
        text += "" if alert.threshold is None else f", threshold {alert.threshold:.4g}"
        text += ")"
    return text


def _frame(rows: Sequence[Any], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")


class DashData:
    """Reads for the Dash pages and the one write they make (a silence)."""

    def __init__(
        self,
        store: Store,
        policies: Callable[[], list[PolicySpec]],
        families: Mapping[str, str],
    ) -> None:
        self.store = store
        self.registry = Registry(store)
        self.alerts = AlertStore(store)
        self.reference_store = ReferenceStore(store)
        self._config_policies = policies
        self.families = dict(families)

    def _columnar(self, query: Select[Any], schema: Mapping[str, Any]) -> pl.DataFrame:
        """A large read straight into Arrow: building a Python row per result costs more
        than the query. Bound values are literal ids and fixed strings."""
        sql = str(query.compile(self.store.engine, compile_kwargs={"literal_binds": True}))
        frame = fetch(self.store, sql)
        if frame.is_empty():
            return pl.DataFrame(schema=dict(schema))
        return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())

    def _rows(self, query: Select[Any]) -> list[Any]:
        with self.store.read() as conn:
            return list(conn.execute(query).all())

    # --- catalog ---------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [m.name for m in self.registry.list_models()]

    def versions(self, model: str | None = None) -> pl.DataFrame:
        """One row per version: model, version id and name, alias, who made it and when."""
        m, v = t.models, t.model_versions
        query = (
            select(m.c.name, v.c.id, v.c.version, v.c.alias, v.c.created_at, v.c.created_by)
            .join(m, m.c.id == v.c.model_id)
            .order_by(m.c.name, v.c.id)
        )
        if model is not None:
            query = query.where(m.c.name == model)
        schema = {
            "model": pl.String,
            "version_id": pl.Int64,
            "version": pl.String,
            "alias": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
            "created_by": pl.String,
        }
        return _frame(self._rows(query), schema)

    # --- fleet -----------------------------------------------------------------------
    def latest_statuses(self) -> pl.DataFrame:
        """Per version, the statuses of its latest evaluated window (whole traffic)."""
        r = t.metric_results
        latest = (
            select(r.c.version_id, func.max(r.c.window_start_us).label("latest"))
            .where(r.c.current == 1, r.c.segment == "")
            .group_by(r.c.version_id)
            .subquery()
        )
        query = (
            select(r.c.version_id, latest.c.latest, r.c.status)
            .join(
                latest,
                (latest.c.version_id == r.c.version_id) & (latest.c.latest == r.c.window_start_us),
            )
            .where(r.c.current == 1, r.c.segment == "")
            .distinct()
        )
        schema = {"version_id": pl.Int64, "latest_window_us": pl.Int64, "status": pl.String}
        return _frame(self._rows(query), schema)

    def run_activity(self) -> pl.DataFrame:
        """Per version: last finished evaluation and events in its last 24 evaluated hours."""
        r = t.evaluation_runs
        done = (r.c.current == 1) & (r.c.segment_key == "")
        latest = (
            select(r.c.version_id, func.max(r.c.window_end_us).label("end_us"))
            .where(done)
            .group_by(r.c.version_id)
            .subquery()
        )
        query = (
            select(
                r.c.version_id,
                r.c.monitor_id,
                func.max(r.c.finished_at),
                func.sum(r.c.n_events),
            )
            .join(latest, latest.c.version_id == r.c.version_id)
            .where(done, r.c.window_end_us > latest.c.end_us - DAY_US)
            .group_by(r.c.version_id, r.c.monitor_id)
        )
        schema = {
            "version_id": pl.Int64,
            "monitor_id": pl.Int64,
            "last_evaluated": pl.Datetime("us", "UTC"),
            "events_24h": pl.Int64,
        }
        # Monitors of one version see the same events: take the largest count, not the sum.
        return (
            _frame(self._rows(query), schema)
            .group_by("version_id")
            .agg(pl.col("last_evaluated").max(), pl.col("events_24h").max())
        )

    def headlines(self, model: str | None = None) -> dict[str, Headline]:
        """Per model (or ``model`` only), its status by :mod:`dashboards.app.status`'s rule."""
        active: dict[str, list[tuple[str, str]]] = {}
        for alert in self.alerts.all([FIRING, PENDING]):
            if model in (None, alert.model):
                active.setdefault(alert.model, []).append((alert.state, _alert_text(alert)))
        counted: dict[str, list[str]] = {}
        options = self._check_options()
        for name, breach in self._champion_breaches(model):
            if breach_counts(breach, options.get((breach.monitor_id, breach.metric), {})):
                counted.setdefault(name, []).append(breach.describe())
        with_results = self._models_with_results(model)
        names = [model] if model is not None else self.model_names()
        return {
            n: headline(active.get(n, []), counted.get(n, []), n in with_results) for n in names
        }

    def _champion_breaches(self, model: str | None) -> list[tuple[str, Breach]]:
        """The breaches of each champion's latest window per monitor (whole traffic)."""
        r, m, v = t.metric_results, t.models, t.model_versions
        whole = (r.c.current == 1) & (r.c.segment == "")
        latest = (
            select(r.c.version_id, r.c.monitor_id, func.max(r.c.window_start_us).label("w"))
            .join(v, v.c.id == r.c.version_id)
            .where(whole, v.c.alias == "champion")
            .group_by(r.c.version_id, r.c.monitor_id)
            .subquery()
        )
        query = (
            select(m.c.name, r.c.monitor_id, r.c.metric, r.c.column_name, r.c.label)
            .add_columns(r.c.threshold, r.c.band_low, r.c.band_high)
            .join(
                latest,
                (latest.c.version_id == r.c.version_id)
                & (latest.c.monitor_id == r.c.monitor_id)
                & (latest.c.w == r.c.window_start_us),
            )
            .join(v, v.c.id == r.c.version_id)
            .join(m, m.c.id == v.c.model_id)
            .where(whole, r.c.status == "breach")
        )
        if model is not None:
            query = query.where(m.c.name == model)
        found = []
        for name, monitor_id, metric, column, label, threshold, low, high in self._rows(query):
            family = self.families.get(metric, "other")
            banded = low is not None and high is not None
            found.append(
                (name, Breach(metric, column, label, family, threshold, banded, monitor_id))
            )
        return found

    def _check_options(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Per (monitor id, metric key), the options its spec gives the check."""
        found: dict[tuple[int, str], dict[str, Any]] = {}
        for monitor_id, spec in self._rows(select(t.monitors.c.id, t.monitors.c.spec)):
            checks = orjson.loads(spec).get("checks") or []
            for metric, options in check_options(checks).items():
                found[(monitor_id, metric)] = options
        return found

    def _models_with_results(self, model: str | None) -> set[str]:
        m, v, r = t.models, t.model_versions, t.metric_results
        has = exists().where(r.c.version_id == v.c.id, r.c.current == 1)
        query = select(m.c.name).join(v, v.c.model_id == m.c.id).where(has).distinct()
        if model is not None:
            query = query.where(m.c.name == model)
        return {name for (name,) in self._rows(query)}

    def firing_counts(self) -> dict[str, int]:
        a = t.alerts
        query = select(a.c.model, func.count()).where(a.c.state == FIRING).group_by(a.c.model)
        return {model: int(n) for model, n in self._rows(query)}

    # --- model page ------------------------------------------------------------------
    def results(
        self, model: str, days: int | None, versions: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """Current whole-traffic results of every version of ``model``, newest ``days`` only,
        with ``version``, ``alias``, ``family``, a UTC ``window`` and its text ``x``.

        ``versions`` is ``self.versions(model)`` when the caller has read it already.
        """
        if versions is None:
            versions = self.versions(model)
        r = t.metric_results
        ids = versions["version_id"].to_list()
        query = select(*(r.c[c] for c in RESULT_COLUMNS)).where(
            r.c.version_id.in_(ids), r.c.current == 1, r.c.segment == ""
        )
        if days is not None and ids:
            newest = select(func.max(r.c.window_start_us)).where(r.c.version_id.in_(ids))
            query = query.where(r.c.window_start_us > newest.scalar_subquery() - days * DAY_US)
        frame = self._columnar(query.order_by(r.c.window_start_us), RESULT_SCHEMA)
        families = pl.DataFrame(
            {"metric": list(self.families), "family": list(self.families.values())},
            schema={"metric": pl.String, "family": pl.String},
        )
        return (
            frame.join(versions.select("version_id", "version", "alias"), on="version_id")
            .join(families, on="metric", how="left")
            .with_columns(
                pl.col("family").fill_null("other"),
                pl.from_epoch("window_start_us", time_unit="us")
                .dt.replace_time_zone("UTC")
                .alias("window"),
            )
            # Plotly's x values, milliseconds on a date axis: shorter JSON than date
            # strings, and plotly.js skips parsing a string per point.
            .with_columns((pl.col("window_start_us") // 1000).alias("x"))
        )

    def policy_thresholds(self, model: str) -> list[PolicyThreshold]:
        policies = self._config_policies() + self.alerts.policies()
        found: list[PolicyThreshold] = []
        for policy in policies:
            if policy.model in ("*", model):
                found += _thresholds(policy, policy.condition)
        return found

    # --- alerts ----------------------------------------------------------------------
    def transitions(self, model: str | None = None, limit: int = 500) -> pl.DataFrame:
        """Alert transitions, newest first, with the alert's policy, model and labels."""
        a, tr = t.alerts, t.alert_transitions
        query = (
            select(a.c.id, a.c.policy, a.c.model, a.c.labels, tr.c.from_state, tr.c.to_state)
            .add_columns(tr.c.at, tr.c.cause)
            .join(a, a.c.id == tr.c.alert_id)
            .order_by(tr.c.id.desc())
            .limit(limit)
        )
        if model is not None:
            query = query.where(a.c.model == model)
        schema = {
            "alert_id": pl.Int64,
            "policy": pl.String,
            "model": pl.String,
            "labels": pl.String,
            "from_state": pl.String,
            "to_state": pl.String,
            "at": pl.Datetime("us", "UTC"),
            "cause": pl.String,
        }
        frame = _frame(self._rows(query), schema)
        version = pl.col("labels").str.json_path_match("$.version").alias("version")
        x = pl.col("at").dt.strftime(X_FORMAT + ":%S").alias("x")
        return frame.with_columns(version, x)

    def firing(self) -> pl.DataFrame:
        rows = [
            (
                a.id,
                a.model,
                a.labels.get("version", ""),
                a.policy,
                a.labels,
                a.value,
                a.threshold,
                a.started_at,
            )
            for a in self.alerts.all([FIRING])
        ]
        schema: dict[str, Any] = {
            "id": pl.Int64,
            "model": pl.String,
            "version": pl.String,
            "policy": pl.String,
            "labels": pl.Object,
            "value": pl.Float64,
            "threshold": pl.Float64,
            "started_at": pl.Datetime("us", "UTC"),
        }
        return pl.DataFrame(rows, schema=schema, orient="row")

    def silences(self) -> list[SilenceRecord]:
        return self.alerts.silences()

    def create_silence(
        self, matchers: list[Matcher], duration_s: int, author: str, comment: str
    ) -> SilenceRecord:
        """The same store call ``POST /v1/silences`` makes, starting now."""
        starts = utcnow()
        ends = starts + timedelta(seconds=duration_s)
        return self.alerts.create_silence(matchers, starts, ends, author, comment)

    # --- ledger ----------------------------------------------------------------------
    def alias_moves(self, model: str | None = None) -> pl.DataFrame:
        """Every alias move of every model (or ``model``), oldest first, with who moved it
        and when."""
        ac, m, v = t.alias_changes, t.models, t.model_versions
        to_v, from_v = v.alias("to_v"), v.alias("from_v")
        query = (
            select(m.c.name, ac.c.alias, from_v.c.version, to_v.c.version, ac.c.changed_at)
            .add_columns(ac.c.changed_by)
            .join(m, m.c.id == ac.c.model_id)
            .join(to_v, to_v.c.id == ac.c.to_version_id)
            .outerjoin(from_v, from_v.c.id == ac.c.from_version_id)
            .order_by(ac.c.id)
        )
        if model is not None:
            query = query.where(m.c.name == model)
        schema = {
            "model": pl.String,
            "alias": pl.String,
            "from_version": pl.String,
            "to_version": pl.String,
            "changed_at": pl.Datetime("us", "UTC"),
            "changed_by": pl.String,
        }
        return _frame(self._rows(query), schema)

    def references(self) -> pl.DataFrame:
        """The active (newest) reference upload of each version."""
        latest = self.reference_store.latest_for_versions(None)
        rows = [(version_id, r["rows"], r["uploaded_at"]) for version_id, r in latest.items()]
        schema = {
            "version_id": pl.Int64,
            "reference_rows": pl.Int64,
            "reference_uploaded_at": pl.Datetime("us", "UTC"),
        }
        return _frame(rows, schema)

    def ledger(self) -> pl.DataFrame:
        """Per version: alias, latest evaluation (window and worst status), reference age."""
        statuses = worst_by(self.latest_statuses(), "version_id", "latest_window_us")
        now = utcnow()
        return (
            self.versions()
            .join(statuses, on="version_id", how="left")
            .join(self.run_activity(), on="version_id", how="left")
            .join(self.references(), on="version_id", how="left")
            .with_columns(
                (pl.lit(now, pl.Datetime("us", "UTC")) - pl.col("reference_uploaded_at")).alias(
                    "reference_age"
                )
            )
        )
