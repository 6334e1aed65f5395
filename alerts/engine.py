"""The policy engine: evaluation results in, alert states out.

For every policy and matching model version it evaluates the condition over
the recent windows. A series whose last ``for`` known windows all breach is
``firing`` (with ``within``: ``for`` of its last ``within`` known windows); one
breaching fewer windows is ``pending``; one no longer held resolves (a pending
one goes back to inactive). An alert's
identity is its label set; each state change is stored with its cause, and a
resolution's reason (:mod:`alerts.reasons`) in its annotations.

Input drift is keyed by traffic stream rather than version (:mod:`alerts.streams`):
versions scoring the same requests share one alert, labelled ``stream`` and
``versions``; the verdict of each window is that of the stream's first version with
one, champion first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import select

from alerts import reasons
from alerts.conditions import SeriesKey, Verdict, evaluate, needed_metrics, persistence
from alerts.streams import COMPARISON_METRIC, Stream, is_input, order, streams, traffic_mode
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
MODE_ROWS = 50  # comparison rows read per version for its latest traffic mode


@dataclass(frozen=True)
class _Series:
    version: VersionRecord
    key: SeriesKey
    verdicts: list[Verdict]  # known windows, oldest first
    run_id: int | None = None  # the evaluation run of the latest window, for its report
    stream: Stream | None = None  # input drift: the traffic it judges; version is its lead


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
        names: set[str] = set()
        for policy in self.policies():
            names.add(policy.name)
            try:
                changed += self._policy(policy)
            except Exception:
                log.exception("evaluating policy %r failed", policy.name)
        try:
            changed += self._removed(names)
        except Exception:
            log.exception("ending the alerts of removed policies failed")
        return changed

    def _removed(self, names: set[str]) -> int:
        """End the alerts of policies no longer configured."""
        orphans = [
            a
            for a in self.alerts.all([PENDING, FIRING])
            if a.policy not in names and _engine_made(a)
        ]
        if orphans:
            with self.store.write() as conn:
                for old in orphans:
                    row = _ended(old, reasons.POLICY_REMOVED)
                    self.alerts.save(conn, row, old, f"policy {old.policy} removed")
        return len(orphans)

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
        listed = {m.name: self.registry.list_versions(m) for m in models}
        previous = self.alerts.for_policy(policy.name)
        seen: set[str] = set()
        updates: list[tuple[dict[str, Any], AlertRecord | None, str]] = []
        for model in models:
            for series in self._series(policy, model, listed[model.name]):
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
                reason, cause = _why_ended(policy, old, listed.get(old.model, []))
                updates.append((_ended(old, reason), old, cause))
        changed = sum(1 for row, old, _ in updates if old is None or old.state != row["state"])
        if updates:
            with self.store.write() as conn:
                for row, old, cause in updates:
                    self.alerts.save(conn, row, old, cause)
        return changed

    def _series(
        self, policy: PolicySpec, model: ModelRecord, versions: list[VersionRecord]
    ) -> list[_Series]:
        wanted = [v for v in versions if policy.aliases is None or v.alias in policy.aliases]
        if not wanted:
            return []
        champion = next((v.id for v in versions if v.alias == Alias.CHAMPION.value), None)
        ids = {v.id for v in wanted} | ({champion} if champion else set())
        results = self._results(sorted(ids), needed_metrics(policy.condition))
        by_id = {v.id: v for v in wanted}
        features = frozenset(f.name for f in model.spec.features)
        grouped: dict[tuple[int, SeriesKey], list[Verdict]] = defaultdict(list)
        inputs: list[Verdict] = []
        for v in evaluate(policy.condition, results, champion):
            if v.version_id not in by_id:
                continue
            if is_input(policy.condition, v, features):
                inputs.append(v)
            else:
                grouped[(v.version_id, v.series)].append(v)
        runs = _run_ids(results)
        out = [_one(by_id[vid], key, vs, runs) for (vid, key), vs in grouped.items()]
        if inputs:
            of = streams(versions, self._modes([v.id for v in versions]))
            out += _streamed(inputs, wanted, of, runs)
        return out

    def _modes(self, version_ids: list[int]) -> dict[int, str]:
        """Each version's traffic mode in its latest comparison with the champion."""
        m = t.metric_results
        query = (
            select(m.c.version_id, m.c.detail)
            .where(
                m.c.version_id.in_(version_ids),
                m.c.metric == COMPARISON_METRIC,
                m.c.current == 1,
                m.c.segment == "",
            )
            .order_by(m.c.window_start_us.desc())
            .limit(MODE_ROWS * max(len(version_ids), 1))
        )
        out: dict[int, str] = {}
        with self.store.read() as conn:
            for version_id, detail in conn.execute(query):
                mode = traffic_mode(str(detail or ""))
                if mode is not None:
                    out.setdefault(int(version_id), mode)
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
        subject = _subject(series)
        labels = {
            "alertname": policy.name,
            "model": model.name,
            **subject,
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
        annotations = self._annotations(policy, labels, latest, series)
        if state == RESOLVED:
            annotations[reasons.RESOLUTION] = reasons.RECOVERED
        row = {
            "fingerprint": fingerprint({k: v for k, v in labels.items() if k != "versions"}),
            "policy": policy.name,
            "model": model.name,
            "labels": labels,
            "annotations": annotations,
            "state": state,
            "value": latest.value,
            "threshold": latest.threshold,
            "trend": [v.value for v in verdicts[-TREND_WINDOWS:] if v.value is not None],
            "consecutive": held.breaching,
            "window_start_us": latest.window_start_us,
        }
        return row, cause

    def _annotations(
        self, policy: PolicySpec, labels: dict[str, str], latest: Verdict, series: _Series
    ) -> dict[str, str]:
        url, run_id, lead = self.external_url, series.run_id, series.version.version
        report_url = f"{url}/v1/runs/{run_id}/report" if run_id is not None else ""
        values = {
            **labels,
            "version": _traffic(series.stream) if series.stream else lead,
            "feature": labels.get("feature", ""),
            "segment": labels.get("segment", ""),
            "metric": latest.metric,
            "value": _fmt(latest.value),
            "threshold": _fmt(latest.threshold),
            "dashboard_url": f"{url}/dash/models/{labels['model']}",
            "results_url": (
                f"{url}/v1/models/{labels['model']}/results?metric={latest.metric}&version={lead}"
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
        if series.stream:
            out[reasons.LEAD_VERSION] = lead
        else:
            out[reasons.ALIAS] = series.version.alias or ""
        return out


def _one(
    version: VersionRecord,
    key: SeriesKey,
    verdicts: list[Verdict],
    runs: dict[tuple[int, int], int],
) -> _Series:
    ordered = sorted(verdicts, key=lambda v: v.window_start_us)
    return _Series(version, key, ordered, runs.get((version.id, ordered[-1].window_start_us)))


def _streamed(
    inputs: list[Verdict],
    wanted: list[VersionRecord],
    of: dict[int, Stream],
    runs: dict[tuple[int, int], int],
) -> list[_Series]:
    """One series per stream and key; each window's verdict from the stream's first
    wanted version (champion first) with one."""
    by_id = {v.id: v for v in wanted}
    rank = {v.id: i for i, v in enumerate(order(wanted))}
    chosen: dict[tuple[str, SeriesKey], dict[int, Verdict]] = defaultdict(dict)
    covered: dict[str, Stream] = {}
    for v in sorted(inputs, key=lambda v: -rank[v.version_id]):  # the first one wins: last
        stream = of[v.version_id]
        chosen[(stream.name, v.series)][v.window_start_us] = v
        members = tuple(m for m in stream.versions if m.id in by_id)
        covered[stream.name] = Stream(stream.name, members)
    out = []
    for (name, key), windows in chosen.items():
        ordered = [windows[w] for w in sorted(windows)]
        lead = by_id[ordered[-1].version_id]
        run_id = runs.get((lead.id, ordered[-1].window_start_us))
        out.append(_Series(lead, key, ordered, run_id, covered[name]))
    return out


def _subject(series: _Series) -> dict[str, str]:
    """The labels naming what an alert judges: a version, or a stream and its versions."""
    if series.stream is None:
        return {"version": series.version.version}
    return {"stream": series.stream.name, "versions": series.stream.version_names}


def _traffic(stream: Stream) -> str:
    """How templates name a stream: ``served traffic (v1, v2)``, ``v3 traffic``."""
    names = [v.version for v in stream.versions]
    if names == [stream.name]:
        return f"{stream.name} traffic"
    return f"{stream.name} traffic ({', '.join(names)})"


def _engine_made(alert: AlertRecord) -> bool:
    """Whether the engine keeps ``alert`` (others, e.g. a pipeline's delivery failures,
    have no window and are kept by their writers)."""
    return alert.window_start_us is not None and "metric" in alert.annotations


def _why_ended(
    policy: PolicySpec, old: AlertRecord, versions: list[VersionRecord]
) -> tuple[str, str]:
    """Why a series vanished: its version's alias moved out of the policy's, or else."""
    name = old.labels.get("version")
    version = next((v for v in versions if v.version == name), None)
    if version is not None and policy.aliases is not None and version.alias not in policy.aliases:
        was = " or ".join(policy.aliases)
        return reasons.ALIAS_CHANGED, f"no longer evaluated: {old.model} {name} is no longer {was}"
    return reasons.NOT_EVALUATED, "no longer evaluated"


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


def _ended(old: AlertRecord, reason: str) -> dict[str, Any]:
    return {
        "fingerprint": old.fingerprint,
        "policy": old.policy,
        "model": old.model,
        "labels": old.labels,
        "annotations": {**old.annotations, reasons.RESOLUTION: reason},
        "state": RESOLVED if old.state == FIRING else INACTIVE,
        "value": old.value,
        "threshold": old.threshold,
        "trend": old.trend,
        "consecutive": 0,
        "window_start_us": old.window_start_us,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
