"""A model's ledger: the governance answers at a glance.

When was it last evaluated, retrained (requested and completed) and promoted,
by whom and with whose approval; how old is the champion's reference data;
who are the champion and challengers, with the challengers' latest comparison.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from modelwatch.store import tables as t
from modelwatch.store.audit import MODEL_PROMOTED, AuditLog
from modelwatch.store.engine import Store
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.timeutil import rfc3339, us_to_datetime, utcnow

__all__ = ["COMPARISON_METRICS", "Ledger"]

# The comparison metrics' keys (evaluators.metrics.comparison, comparison_sequential): the
# per-window comparison, its cost, and the sequential comparison with its always-valid interval.
COMPARISON_METRICS = ("champion_challenger", "champion_challenger_sequential", "cost_diff")


def _iso(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


class Ledger:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.audit = AuditLog(store)
        self.references = ReferenceStore(store)

    def for_model(self, name: str) -> dict[str, Any]:
        model = self.registry.get_model(name)
        versions = self.registry.list_versions(model)
        by_id = {v.id: v for v in versions}
        references = self.references.latest_by_version(model)
        history = self.registry.alias_history(model)
        champion = next((v for v in versions if v.alias == "champion"), None)
        challengers = [v for v in versions if v.alias == "challenger"]
        return {
            "model": model.name,
            "task": model.spec.task.value,
            "last_evaluation": self._last_evaluation(by_id),
            "last_retrain_requested": self._retrain(model, None, by_id),
            "last_retrain_completed": self._retrain(model, "completed", by_id),
            "last_promotion": self._last_promotion(model, history),
            "champion": self._version(champion, references, history) if champion else None,
            "challengers": [
                {
                    **self._version(v, references, history),
                    "comparison": self._comparison(v),
                }
                for v in challengers
            ],
            "versions": [
                {
                    "id": v.id,
                    "version": v.version,
                    "alias": v.alias,
                    "created_at": _iso(v.created_at),
                }
                for v in versions
            ],
        }

    def _version(
        self,
        version: VersionRecord,
        references: dict[int, dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> dict[str, Any]:
        ref = references.get(version.id)
        since = next(
            (
                h
                for h in reversed(history)
                if h["alias"] == version.alias and h["to_version"] == version.version
            ),
            None,
        )
        return {
            "version": version.version,
            "alias": version.alias,
            "alias_since": _iso(since["changed_at"]) if since else None,
            "alias_moved_by": since["changed_by"] if since else None,
            "reference": None
            if ref is None
            else {
                "rows": ref["rows"],
                "uploaded_at": _iso(ref["uploaded_at"]),
                "uploaded_by": ref["uploaded_by"],
                "age_seconds": int((utcnow() - ref["uploaded_at"]).total_seconds()),
            },
        }

    def _last_evaluation(self, by_id: dict[int, VersionRecord]) -> dict[str, Any] | None:
        runs = t.evaluation_runs
        query = (
            select(runs.c.version_id, runs.c.finished_at, runs.c.window_start_us, runs.c.id)
            .where(runs.c.version_id.in_(list(by_id)), runs.c.status == "done")
            .order_by(runs.c.finished_at.desc())
            .limit(1)
        )
        with self.store.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return {
            "at": _iso(row.finished_at),
            "version": by_id[row.version_id].version,
            "window_start": _iso(us_to_datetime(row.window_start_us)),
            "run_id": row.id,
        }

    def _retrain(
        self, model: ModelRecord, status: str | None, by_id: dict[int, VersionRecord]
    ) -> dict[str, Any] | None:
        r = t.retrain_requests
        query = select(r).where(r.c.model_id == model.id, r.c.status != "suppressed")
        if status is not None:
            query = query.where(r.c.status == status)
        order = r.c.completed_at.desc() if status else r.c.requested_at.desc()
        with self.store.read() as conn:
            row = conn.execute(query.order_by(order, r.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        new = by_id.get(row.new_version_id) if row.new_version_id is not None else None
        return {
            "retrain_id": row.uid,
            "policy": row.policy,
            "pipeline": row.pipeline,
            "status": row.status,
            "requested_at": _iso(row.requested_at),
            "completed_at": _iso(row.completed_at),
            "new_version": new.version if new is not None else None,
        }

    def _last_promotion(
        self, model: ModelRecord, history: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The newest champion change that replaced a champion: by a promote action (with its
        approval) or by hand (``PUT /v1/models/{name}/aliases/champion``, by that key)."""
        records = self.audit.query(action=MODEL_PROMOTED, model=model.name, limit=1)
        record = records[0] if records else None
        moved = next(
            (
                h
                for h in reversed(history)
                if h["alias"] == "champion" and h["from_version"] is not None
            ),
            None,
        )
        if record is not None and (moved is None or record.at >= moved["changed_at"]):
            return {
                "at": _iso(record.at),
                "version": record.version,
                "previous_champion": record.details.get("previous_champion"),
                "approved_by": record.details.get("approved_by"),
                "approval_id": record.details.get("approval_id"),
            }
        if moved is None:
            return None
        return {
            "at": _iso(moved["changed_at"]),
            "version": moved["to_version"],
            "previous_champion": moved["from_version"],
            "approved_by": moved["changed_by"],
            "approval_id": None,
        }

    def _comparison(self, version: VersionRecord) -> list[dict[str, Any]]:
        """The challenger's latest window of each champion-vs-challenger metric (the
        sequential comparison may run in a monitor of another window than the others)."""
        m = t.metric_results
        mine = (m.c.version_id == version.id, m.c.metric.in_(COMPARISON_METRICS))
        latest = (
            select(m.c.metric, func.max(m.c.window_start_us).label("start"))
            .where(*mine, m.c.current == 1, m.c.segment == "")
            .group_by(m.c.metric)
            .subquery()
        )
        query = (
            select(m)
            .join(latest, (latest.c.metric == m.c.metric) & (latest.c.start == m.c.window_start_us))
            .where(*mine, m.c.current == 1, m.c.segment == "")
        )
        with self.store.read() as conn:
            rows = conn.execute(query.order_by(m.c.metric, m.c.label)).all()
        return [
            {
                "metric": r.metric,
                "figure": r.label,
                "value": r.value,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "p_value": r.p_value,
                "n": r.n,
                "status": r.status,
                "window_start": _iso(us_to_datetime(r.window_start_us)),
            }
            for r in rows
        ]
