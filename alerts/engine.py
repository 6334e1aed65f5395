"""The policy engine: evaluation results in, alert states out.

For every policy and matching model version it evaluates the condition over
the recent windows. A series whose last ``for`` known windows all breach is
``firing`` (with ``within``: ``for`` of its last ``within`` known windows); one
breaching fewer windows is ``pending``; one no longer held resolves (a pending
one goes back to inactive). An alert's
identity is its label set; each state change is stored with its cause.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import select

from alerts.conditions import SeriesKey, Verdict, evaluate, needed_metrics, persistence
from modelwatch.domain import Alias
from modelwatch.errors import NotFoundError
from modelwatch.policies import PolicySpec
from modelwatch.store import tables as t
from modelwatch.store.alerts import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertRecord,
    AlertStore,
    fingerprint,
)
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.timeutil import us_to_datetime

__all__ = ["PolicyEngine"]

log = logging.getLogger(__name__)
TREND_WINDOWS = 12
LOOKBACK_WINDOWS = 48


@dataclass(frozen=True)
class _Series:
    version: VersionRecord
    key: SeriesKey
    verdicts: list[Verdict]  # known windows, oldest first
    run_id: int | None = None  # the evaluation run of the latest window, for its report


class PolicyEngine:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        policies: Callable[[], Sequence[PolicySpec]],
        external_url: str = "http://127.0.0.1:8000",
    ) -> None:
        self.store = store
        self.registry = registry
        self.policies = policies
        self.alerts = AlertStore(store)
        self.external_url = external_url.rstrip("/")
        self._unknown_models: set[tuple[str, str]] = set()  # (policy, model) warned about

    def evaluate(self) -> int:
        """Evaluate every policy; returns how many alerts changed state. Never raises."""
        changed = 0
        for policy in self.policies():
            try:
                changed += self._policy(policy)
            except Exception:
                log.exception("evaluating policy %r failed", policy.name)
        return changed

    def _models(self, policy: PolicySpec) -> list[ModelRecord]:
        """The models ``policy`` watches; none, with one warning, while its model is unknown
        (e.g. deleted), so that its alerts end rather than each cycle logging a traceback."""
        if policy.model == "*":
            return self.registry.list_models()
        key = (policy.name, policy.model)
        try:
            model = self.registry.get_model(policy.model)
        except NotFoundError:
            if key not in self._unknown_models:
                self._unknown_models.add(key)
                log.warning(
                    "policy %r watches model %r, which is not registered: it is not evaluated",
                    policy.name,
                    policy.model,
                )
            return []
        self._unknown_models.discard(key)
        return [model]

    def _policy(self, policy: PolicySpec) -> int:
        models = self._models(policy)
        previous = self.alerts.for_policy(policy.name)
        seen: set[str] = set()
        updates: list[tuple[dict[str, Any], AlertRecord | None, str]] = []
        for model in models:
            for series in self._series(policy, model):
                row, cause = self._alert_row(policy, model, series)
                seen.add(row["fingerprint"])
                old = previous.get(row["fingerprint"])
                if row["state"] == RESOLVED and (old is None or old.state in (PENDING, INACTIVE)):
                    row["state"] = INACTIVE  # only a firing alert resolves; pending just ends
                if old is None and row["state"] == INACTIVE:
                    continue
                if old is not None and _unchanged(row, old):
                    continue  # nothing new since the last cycle: no write
                updates.append((row, old, cause))
        for fp, old in previous.items():  # series that vanished (e.g. a version retired)
            if fp not in seen and old.state in (PENDING, FIRING):
                updates.append((_ended(old), old, "no longer evaluated"))
        changed = sum(1 for row, old, _ in updates if old is None or old.state != row["state"])
        if updates:
            with self.store.write() as conn:
                for row, old, cause in updates:
                    self.alerts.save(conn, row, old, cause)
        return changed

    def _series(self, policy: PolicySpec, model: ModelRecord) -> list[_Series]:
        versions = self.registry.list_versions(model)
        wanted = [v for v in versions if policy.aliases is None or v.alias in policy.aliases]
        if not wanted:
            return []
        champion = next((v.id for v in versions if v.alias == Alias.CHAMPION.value), None)
        ids = {v.id for v in wanted} | ({champion} if champion else set())
        results = self._results(sorted(ids), needed_metrics(policy.condition))
        verdicts = evaluate(policy.condition, results, champion)
        grouped: dict[tuple[int, SeriesKey], list[Verdict]] = defaultdict(list)
        for v in verdicts:
            grouped[(v.version_id, v.series)].append(v)
        by_id = {v.id: v for v in wanted}
        runs = _run_ids(results)
        out = []
        for (vid, key), vs in grouped.items():
            if vid in by_id:
                ordered = sorted(vs, key=lambda v: v.window_start_us)
                run_id = runs.get((vid, ordered[-1].window_start_us))
                out.append(_Series(by_id[vid], key, ordered, run_id))
        return out

    def _results(self, version_ids: list[int], metrics: set[str]) -> pl.DataFrame:
        m = t.metric_results
        recent = (
            select(m.c.window_start_us)
            .where(m.c.version_id.in_(version_ids), m.c.current == 1)
            .group_by(m.c.window_start_us)
            .order_by(m.c.window_start_us.desc())
            .limit(LOOKBACK_WINDOWS)
        )
        cols = [
            m.c.run_id,
            m.c.monitor_id,
            m.c.version_id,
            m.c.window_start_us,
            m.c.metric,
            m.c.column_name,
            m.c.label,
            m.c.segment,
            m.c.value,
            m.c.ci_low,
            m.c.ci_high,
            m.c.threshold,
            m.c.status,
            m.c.band_low,
            m.c.band_high,
            m.c.detail,
        ]
        query = select(*cols).where(
            m.c.version_id.in_(version_ids),
            m.c.current == 1,
            m.c.metric.in_(sorted(metrics)),
            m.c.window_start_us.in_(recent.scalar_subquery()),
        )
        with self.store.read() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        schema = {
            "run_id": pl.Int64,
            "monitor_id": pl.Int64,
            "version_id": pl.Int64,
            "window_start_us": pl.Int64,
            "metric": pl.String,
            "column_name": pl.String,
            "label": pl.String,
            "segment": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "threshold": pl.Float64,
            "status": pl.String,
            "band_low": pl.Float64,
            "band_high": pl.Float64,
            "detail": pl.String,
        }
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _alert_row(
        self, policy: PolicySpec, model: ModelRecord, series: _Series
    ) -> tuple[dict[str, Any], str]:
        labels = {
            "alertname": policy.name,
            "model": model.name,
            "version": series.version.version,
            "severity": policy.severity.value,
            **dict(series.key),
            **policy.labels,
        }
        verdicts = series.verdicts
        latest = verdicts[-1]
        held = persistence([v.breach for v in verdicts], policy.for_windows, policy.within)
        state = FIRING if held.firing else PENDING if held.pending else RESOLVED
        window = us_to_datetime(latest.window_start_us)
        cause = (
            f"{latest.metric} = {_fmt(latest.value)} in the window from {window:%Y-%m-%d %H:%M}Z "
            f"({held.cause(policy.for_windows, policy.within)})"
        )
        row = {
            "fingerprint": fingerprint(labels),
            "policy": policy.name,
            "model": model.name,
            "labels": labels,
            "annotations": self._annotations(policy, labels, latest, series.run_id),
            "state": state,
            "value": latest.value,
            "threshold": latest.threshold,
            "trend": [v.value for v in verdicts[-TREND_WINDOWS:] if v.value is not None],
            "consecutive": held.breaching,
            "window_start_us": latest.window_start_us,
        }
        return row, cause

    def _annotations(
        self, policy: PolicySpec, labels: dict[str, str], latest: Verdict, run_id: int | None
    ) -> dict[str, str]:
        url = self.external_url
        report_url = f"{url}/v1/runs/{run_id}/report" if run_id is not None else ""
        values = {
            **labels,
            "feature": labels.get("feature", ""),
            "segment": labels.get("segment", ""),
            "metric": latest.metric,
            "value": _fmt(latest.value),
            "threshold": _fmt(latest.threshold),
            "dashboard_url": f"{url}/dash/models/{labels['model']}",
            "results_url": (
                f"{url}/v1/models/{labels['model']}/results"
                f"?metric={latest.metric}&version={labels['version']}"
            ),
            "report_url": report_url,
        }
        defaults = {
            "summary": "{alertname}: {metric} of {model} {version} is {value} "
            "(threshold {threshold})",
            "metric": "{metric}",
            "dashboard_url": "{dashboard_url}",
            "results_url": "{results_url}",
            **({"report_url": "{report_url}"} if report_url else {}),
        }
        out = {}
        for key, template in {**defaults, **policy.annotations}.items():
            try:
                out[key] = template.format(**values)
            except (KeyError, IndexError, ValueError) as exc:
                out[key] = f"{template} (template error: {exc})"
        return out


def _run_ids(results: pl.DataFrame) -> dict[tuple[int, int], int]:
    """The run behind each (version, window): a whole-window run before a per-segment
    one, then the newest."""
    best = results.sort(
        ["version_id", "window_start_us", pl.col("segment") != "", "run_id"],
        descending=[False, False, False, True],
    ).unique(["version_id", "window_start_us"], keep="first")
    rows = best.select("version_id", "window_start_us", "run_id").iter_rows()
    return {(v, w): r for v, w, r in rows}


def _unchanged(row: dict[str, Any], old: AlertRecord) -> bool:
    """Whether saving ``row`` would store exactly what ``old`` holds (bar ``updated_at``)."""
    return all(row[name] == getattr(old, name) for name in _SAVED if name in row)


_SAVED = (
    "state",
    "labels",
    "annotations",
    "value",
    "threshold",
    "trend",
    "consecutive",
    "window_start_us",
)


def _ended(old: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": old.fingerprint,
        "policy": old.policy,
        "model": old.model,
        "labels": old.labels,
        "annotations": old.annotations,
        "state": RESOLVED if old.state == FIRING else INACTIVE,
        "value": old.value,
        "threshold": old.threshold,
        "trend": old.trend,
        "consecutive": 0,
        "window_start_us": old.window_start_us,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
