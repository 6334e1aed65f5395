"""Promotion: a firing ``promote`` policy moves the champion alias to the challenger.

With ``require_approval`` it records a pending approval instead, decided by
``POST /v1/approvals/{id}``. A promotion moves the alias, records who approved
it, and (with ``deploy``) queues a signed webhook to the deployment pipeline, all
in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from modelwatch.domain import Alias
from modelwatch.errors import ConflictError
from modelwatch.outbox import Outbox
from modelwatch.pipelines import PipelineSpec, PromoteAction
from modelwatch.policies import PolicySpec
from modelwatch.store import audit
from modelwatch.store.alerts import AlertRecord, AlertStore
from modelwatch.store.audit import MODEL_PROMOTED
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord, Registry
from modelwatch.store.retrain import PIPELINE_DELIVERY, RetrainStore
from modelwatch.timeutil import rfc3339, utcnow
from retrain.episodes import undecided_episodes

__all__ = ["Promoter"]

log = logging.getLogger(__name__)


class Promoter:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        pipelines: Mapping[str, PipelineSpec],
        policies: Callable[[], Sequence[PolicySpec]],
    ) -> None:
        self.store = store
        self.registry = registry
        self.pipelines = pipelines
        self.policies = policies
        self.alerts = AlertStore(store)
        self.retrain = RetrainStore(store)
        self.outbox = Outbox(store)

    def run(self) -> int:
        """Act on every firing promote policy's new episodes; returns decisions made."""
        made = 0
        try:
            episodes = undecided_episodes(self.policies, self.alerts, self.retrain, "promote")
        except Exception:
            log.exception("finding alerts that ask for a promotion failed")
            return made
        for e in episodes:
            try:
                assert isinstance(e.action, PromoteAction)
                made += self._decide(e.policy, e.action, e.alert, e.key)
            except Exception:
                log.exception("promotion for policy %r failed", e.policy.name)
        return made

    def _decide(
        self, policy: PolicySpec, action: PromoteAction, alert: AlertRecord, key: str
    ) -> bool:
        version_name = alert.labels.get("version")
        if not version_name:
            return False
        model = self.registry.get_model(alert.model)
        version = self.registry.get_version(model, version_name)
        details = {
            "version": version_name,
            "policy": policy.name,
            "alert": alert.labels,
            "value": alert.value,
            "deploy": action.deploy,
        }
        with self.store.write() as conn:
            approval_id = self.retrain.create_approval(
                conn,
                model_id=model.id,
                version_id=version.id,
                policy=policy.name,
                trigger_key=key,
                status="pending" if action.require_approval else "approved",
                details=details,
                decided_by=None if action.require_approval else f"policy:{policy.name}",
            )
            if approval_id is None:
                return False
            if action.require_approval:
                audit.record(
                    conn,
                    audit.SYSTEM,
                    "approval.requested",
                    model=model.name,
                    version=version_name,
                    subject=str(approval_id),
                    details=details,
                )
            else:
                self.promote(
                    conn, model, version_name, f"policy:{policy.name}", approval_id, action.deploy
                )
        return True

    def decide(self, approval_id: int, approve: bool, actor: str, comment: str) -> dict[str, Any]:
        """A human's decision on a pending approval; approving promotes at once."""
        with self.store.write() as conn:
            row = self.retrain.decide(conn, approval_id, approve, actor, comment)
            model = self.registry.model_by_id(row.model_id)
            version = self.registry.version_by_id(row.version_id)
            audit.record(
                conn,
                actor,
                "approval.approved" if approve else "approval.rejected",
                model=model.name,
                version=version.version,
                subject=str(approval_id),
                details={"comment": comment, "policy": row.policy},
            )
            if approve:
                deploy = _deploy_of(row.details)
                self.promote(conn, model, version.version, actor, approval_id, deploy)
        return {"id": approval_id, "status": "approved" if approve else "rejected"}

    def promote(
        self,
        conn: Connection,
        model: ModelRecord,
        version: str,
        approved_by: str,
        approval_id: int | None,
        deploy: str | None,
    ) -> None:
        """Move the champion alias in ``conn``'s transaction and queue the deploy webhook."""
        versions = self.registry.list_versions(model)
        target = next((v for v in versions if v.version == version), None)
        if target is None:
            target = self.registry.get_version(model, version)  # raises NotFoundError
        previous = next((v.version for v in versions if v.alias == Alias.CHAMPION.value), None)
        if previous == version:
            raise ConflictError(f"version {version!r} of {model.name!r} is already the champion")
        self.registry.move_alias(conn, model, Alias.CHAMPION, target.id, approved_by, utcnow())
        data = {
            "model": model.name,
            "version": version,
            "previous_champion": previous,
            "approved_by": approved_by,
            "approval_id": approval_id,
        }
        audit.record(
            conn, approved_by, MODEL_PROMOTED, model=model.name, version=version, details=data
        )
        if deploy is not None and deploy in self.pipelines:
            uid = f"msg_promote_{model.id}_{target.id}_{approval_id or 0}"
            self.outbox.enqueue(
                conn,
                kind=PIPELINE_DELIVERY,
                stream=f"pipeline:{uid}",
                target=deploy,
                idempotency_key=uid,
                payload={"type": MODEL_PROMOTED, "timestamp": rfc3339(utcnow()), "data": data},
                max_age_s=self.pipelines[deploy].max_age,
            )


def _deploy_of(details: str) -> str | None:
    value = orjson.loads(details).get("deploy")
    return str(value) if value else None
