"""From firing alerts to retrain requests.

Every firing alert of a policy with a ``retrain`` action asks once per episode
(the alert's fingerprint and start time make the trigger key); the store decides
under the model's cooldown lock whether the request goes out or is held back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from modelwatch.pipelines import PipelineSpec, RetrainAction
from modelwatch.policies import PolicySpec
from modelwatch.store import tables as t
from modelwatch.store.alerts import AlertRecord, AlertStore
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.store.retrain import RetrainRequest, RetrainStore, TriggerSpec
from modelwatch.timeutil import rfc3339, us_to_datetime, utcnow
from retrain.episodes import undecided_episodes

__all__ = ["RETRAIN_REQUESTED", "RetrainTrigger", "new_webhook_id"]

log = logging.getLogger(__name__)
RETRAIN_REQUESTED = "retrain.requested"
_MAX_RESULTS = 50


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class RetrainTrigger:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        pipelines: Mapping[str, PipelineSpec],
        policies: Callable[[], Sequence[PolicySpec]],
        external_url: str,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pipelines = pipelines
        self.policies = policies
        self.external_url = external_url.rstrip("/")
        self.alerts = AlertStore(store)
        self.retrain = RetrainStore(store)

    def run(self) -> list[RetrainRequest]:
        """Decide a request for every firing alert episode not yet decided. Never raises."""
        made: list[RetrainRequest] = []
        try:
            episodes = undecided_episodes(self.policies, self.alerts, self.retrain, "retrain")
        except Exception:
            log.exception("finding alerts that ask for a retrain failed")
            return made
        for e in episodes:
            try:
                assert isinstance(e.action, RetrainAction)
                request = self._request(e.policy, e.action, e.alert, e.key)
            except Exception:
                log.exception("retrain trigger for policy %r failed", e.policy.name)
                continue
            if request is not None:
                made.append(request)
        return made

    def _request(
        self, policy: PolicySpec, action: RetrainAction, alert: AlertRecord, key: str
    ) -> RetrainRequest | None:
        pipeline = self.pipelines[action.pipeline]
        started = alert.started_at.isoformat() if alert.started_at else ""
        model = self.registry.get_model(alert.model)
        # an input-drift alert judges a stream of versions: its lead version is the one asked
        version_name = alert.labels.get("version") or alert.annotations.get("lead_version")
        version = self.registry.get_version(model, version_name) if version_name else None
        results = self._results(version.id if version else None, alert.window_start_us)
        window_end = max((r["window_end_us"] for r in results), default=None)
        uid = new_webhook_id()
        payload = {
            "type": RETRAIN_REQUESTED,
            "timestamp": rfc3339(utcnow()),
            "data": {
                "retrain_id": uid,
                "model": model.name,
                "version": version_name,
                "alias": version.alias if version else None,
                "policy": policy.name,
                "severity": policy.severity.value,
                "alert": {
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "value": alert.value,
                    "threshold": alert.threshold,
                    "started_at": started or None,
                },
                "window": {
                    "start": _iso(alert.window_start_us),
                    "end": _iso(window_end),
                },
                "results": [_public(r) for r in results],
                "training_data": {**pipeline.training_data, **action.training_data},
                "callback_url": f"{self.external_url}/v1/retrain/callback",
            },
        }
        return self.retrain.request(
            TriggerSpec(
                trigger_key=key,
                uid=uid,
                model_id=model.id,
                model=model.name,
                version_id=version.id if version else None,
                version=version_name,
                policy=policy.name,
                pipeline=pipeline.name,
                alert_id=alert.id,
                window_start_us=alert.window_start_us,
                window_end_us=window_end,
                cooldown_s=action.cooldown,
                max_age_s=pipeline.max_age,
                payload=payload,
            )
        )

    def _results(self, version_id: int | None, window_start_us: int | None) -> list[dict[str, Any]]:
        """The window's breaching results: what the pipeline is asked to fix."""
        if version_id is None or window_start_us is None:
            return []
        m = t.metric_results
        query = (
            select(
                m.c.metric,
                m.c.column_name,
                m.c.segment,
                m.c.value,
                m.c.p_value,
                m.c.threshold,
                m.c.status,
                m.c.n,
                m.c.window_end_us,
            )
            .where(
                m.c.version_id == version_id,
                m.c.window_start_us == window_start_us,
                m.c.current == 1,
                m.c.status == "breach",
            )
            .order_by(m.c.metric, m.c.column_name)
            .limit(_MAX_RESULTS)
        )
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _iso(us: int | None) -> str | None:
    moment = us_to_datetime(us)
    return rfc3339(moment) if moment is not None else None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "window_end_us"}
    out["column"] = out.pop("column_name") or None
    out["segment"] = out["segment"] or None
    return out
