"""Follow MLflow's model registry: versions arrive, aliases move both ways.

Each sync, per followed registered model:

1. every MLflow version modelwatch lacks is registered (same version string, actor
   ``mlflow``), with its run's reference artifact as its reference when one is named;
2. each mapped alias is compared on three sides: MLflow's now, modelwatch's now, and
   the version both last agreed on (kept in the store). The side that moved since
   wins; when both moved, MLflow (the registry of record) wins, and the conflict is an
   audit record and a warning alert (``mlflow-alias-conflict``) that resolves at the
   next sync in which the alias agrees. A promotion decided in modelwatch (a
   ``promote`` action, an approval, ``PUT .../aliases/champion``) therefore reaches
   MLflow at the next sync, and an alias moved in MLflow moves here, never flip-flopping.

An alias removed on one side (or set on one side only, as when a challenger becomes
champion here and no version holds ``challenger`` any more) is not a move: the other
side keeps its alias, and nothing flips back and forth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from modelwatch.domain import Alias
from modelwatch.errors import FieldError, UpstreamError, ValidationFailed
from modelwatch.mlflow_spec import MlflowModelSpec, MlflowSpec
from modelwatch.store import audit
from modelwatch.store.alerts import FIRING, RESOLVED, AlertStore, fingerprint
from modelwatch.store.engine import Store
from modelwatch.store.mlflow_marks import AgreedAliases
from modelwatch.store.references import ReferenceStore, sha256_hex
from modelwatch.store.registry import ModelRecord, Registry
from retrain.callback import ReferenceParser
from retrain.mlflow_client import MlflowError, MlflowRegistry, MlflowVersion

__all__ = ["ACTOR", "CONFLICT_POLICY", "MlflowSync", "SyncResult"]

log = logging.getLogger(__name__)

ACTOR = "mlflow"
CONFLICT_POLICY = "mlflow-alias-conflict"


@dataclass
class SyncResult:
    """What one sync of one registered model did."""

    model: str
    versions_added: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    aliases_pulled: dict[str, str] = field(default_factory=dict)
    aliases_pushed: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, dict[str, str | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class MlflowSync:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        spec: MlflowSpec,
        parse_reference: ReferenceParser,
        client: MlflowRegistry | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.spec = spec
        self.parse_reference = parse_reference
        self.client = client or MlflowRegistry(spec.tracking_uri)
        self.agreed = AgreedAliases(store)
        self.references = ReferenceStore(store)
        self.alerts = AlertStore(store)

    def sync(self) -> list[SyncResult]:
        """One pass over every followed registered model; a model that fails is reported
        in its result and the others still sync."""
        out = []
        for followed in self.spec.models:
            result = SyncResult(followed.model)
            try:
                self._sync_model(followed, result)
            except Exception as exc:  # MLflow down, model unknown: said, not raised
                log.warning("MLflow sync of %r failed: %s", followed.registered_model, exc)
                result.problems.append(str(exc))
            out.append(result)
        return out

    def sync_quietly(self) -> None:
        """The scheduled sync: logs what changed, never raises."""
        try:
            for result in self.sync():
                if result.versions_added or result.aliases_pulled or result.aliases_pushed:
                    log.info("MLflow sync: %s", result)
        except Exception:
            log.exception("the MLflow sync failed")

    def close(self) -> None:
        self.client.close()

    def reference_of(self, model: str, mlflow_version: str) -> tuple[bytes, str]:
        """The bytes and format of the reference artifact of MLflow version
        ``mlflow_version`` of the registered model ``model`` follows (for a retrain
        callback that names it instead of uploading its reference)."""
        loc = ("version", "mlflow_version")
        followed = next((m for m in self.spec.models if m.model == model), None)
        if followed is None or followed.reference_artifact is None:
            why = (
                "follows no MLflow registered model"
                if followed is None
                else ("has no reference_artifact in its mlflow: entry")
            )
            raise ValidationFailed([FieldError(loc, f"model {model!r} {why}", mlflow_version)])
        try:
            version = self.client.version(followed.registered_model, mlflow_version)
            if version is None or not version.run_id:
                problem = "no such version" if version is None else "a version without a run"
                raise ValidationFailed(
                    [FieldError(loc, f"{followed.registered_model}: {problem}", mlflow_version)]
                )
            data = self.client.artifact(version.run_id, followed.reference_artifact)
        except MlflowError as exc:
            raise UpstreamError(f"MLflow: {exc}") from None
        return data, _artifact_format(followed.reference_artifact)

    # --- one model --------------------------------------------------------------------
    def _sync_model(self, followed: MlflowModelSpec, result: SyncResult) -> None:
        model = self.registry.get_model(followed.model)
        known = {v.version for v in self.registry.list_versions(model)}
        for version in self.client.versions(followed.registered_model, known):
            self._add_version(model, followed, version, result)
        mlflow_now = self.client.aliases(followed.registered_model)
        for mlflow_alias, alias in followed.aliases.items():
            self._sync_alias(model, followed, mlflow_alias, alias, mlflow_now, result)

    def _add_version(
        self,
        model: ModelRecord,
        followed: MlflowModelSpec,
        version: MlflowVersion,
        result: SyncResult,
    ) -> None:
        description = version.description or (
            f"MLflow {followed.registered_model} version {version.version}"
            + (f" (run {version.run_id})" if version.run_id else "")
        )
        record = self.registry.create_version(model, version.version, None, ACTOR, description)
        result.versions_added.append(version.version)
        if followed.reference_artifact is None or not version.run_id:
            return
        path = followed.reference_artifact
        try:
            data = self.client.artifact(version.run_id, path)
            frame, fmt, _ = self.parse_reference(model, data, _artifact_format(path))
        except Exception as exc:  # the version stays; its reference can be uploaded later
            problem = f"version {version.version}: reference {path!r} not loaded: {exc}"
            log.warning("MLflow sync of %r: %s", followed.registered_model, problem)
            result.problems.append(problem)
            return
        self.references.save(model, record, frame, fmt, sha256_hex(data), ACTOR)
        result.references.append(version.version)

    def _sync_alias(
        self,
        model: ModelRecord,
        followed: MlflowModelSpec,
        mlflow_alias: str,
        alias: Alias,
        mlflow_now: dict[str, str],
        result: SyncResult,
    ) -> None:
        theirs = mlflow_now.get(mlflow_alias)
        ours = next(
            (v.version for v in self.registry.list_versions(model) if v.alias == alias.value),
            None,
        )
        last = self.agreed.of(model.id).get(alias.value)
        # A side moved when it names a version other than the last agreed one; an alias
        # one side has removed (or never set) is not a move, so it never starts a flip.
        theirs_moved = theirs if theirs is not None and theirs != last else None
        ours_moved = ours if ours is not None and ours != last else None
        agreed: str | None = None
        if theirs == ours:
            agreed = theirs
        elif theirs_moved is not None and ours_moved is not None:
            agreed = self._conflict(
                model, followed, mlflow_alias, alias, theirs_moved, ours_moved, last, result
            )
        elif theirs_moved is not None:
            agreed = self._pull(model, alias, theirs_moved, result)
        elif ours_moved is not None:
            agreed = self._push(model, followed, mlflow_alias, ours_moved, result)
        else:
            result.notes.append(f"alias {alias.value}: set on one side only, left as it is")
        conflicted = alias.value in result.conflicts
        with self.store.write() as conn:
            if agreed is not None:
                self.agreed.agree(conn, model.id, alias.value, agreed)
            self._conflict_alert(conn, model, alias, conflicted, result)

    def _pull(self, model: ModelRecord, alias: Alias, theirs: str, result: SyncResult) -> str:
        self.registry.set_alias(model, alias, theirs, ACTOR)
        result.aliases_pulled[alias.value] = theirs
        return theirs

    def _push(
        self,
        model: ModelRecord,
        followed: MlflowModelSpec,
        mlflow_alias: str,
        ours: str,
        result: SyncResult,
    ) -> str:
        self.client.set_alias(followed.registered_model, mlflow_alias, ours)
        with self.store.write() as conn:
            audit.record(
                conn,
                audit.SYSTEM,
                "mlflow.alias_set",
                model=model.name,
                version=ours,
                subject=mlflow_alias,
                details={"registered_model": followed.registered_model, "alias": mlflow_alias},
            )
        result.aliases_pushed[mlflow_alias] = ours
        return ours

    def _conflict(
        self,
        model: ModelRecord,
        followed: MlflowModelSpec,
        mlflow_alias: str,
        alias: Alias,
        theirs: str,
        ours: str,
        last: str | None,
        result: SyncResult,
    ) -> str:
        details = {"mlflow": theirs, "modelwatch": ours, "last_agreed": last}
        result.conflicts[alias.value] = details
        log.warning(
            "MLflow sync of %r: alias %r moved on both sides (%s); MLflow wins",
            followed.registered_model,
            mlflow_alias,
            details,
        )
        with self.store.write() as conn:
            audit.record(
                conn,
                ACTOR,
                "mlflow.alias_conflict",
                model=model.name,
                version=theirs,
                subject=alias.value,
                details={**details, "registered_model": followed.registered_model},
            )
        return self._pull(model, alias, theirs, result)

    def _conflict_alert(
        self, conn: Any, model: ModelRecord, alias: Alias, conflicted: bool, result: SyncResult
    ) -> None:
        labels = {
            "alertname": CONFLICT_POLICY,
            "model": model.name,
            "alias": alias.value,
            "severity": "warning",
        }
        fp = fingerprint(labels)
        old = self.alerts.by_fingerprint(conn, fp)
        if not conflicted and (old is None or old.state != FIRING):
            return
        details = result.conflicts.get(alias.value, {})
        summary = (
            f"{model.name}: alias {alias.value} moved in MLflow (to {details.get('mlflow')}) "
            f"and in modelwatch (to {details.get('modelwatch')}); MLflow won"
            if conflicted
            else f"{model.name}: alias {alias.value} agrees with MLflow again"
        )
        row: dict[str, Any] = {
            "fingerprint": fp,
            "policy": CONFLICT_POLICY,
            "model": model.name,
            "labels": labels,
            "annotations": {"summary": summary},
            "state": FIRING if conflicted else RESOLVED,
            "value": None,
            "threshold": None,
            "trend": [],
            "consecutive": 1 if conflicted else 0,
            "window_start_us": None,
        }
        cause = "moved on both sides" if conflicted else "aliases agree"
        self.alerts.save(conn, row, old, cause)


def _artifact_format(path: str) -> str:
    """The reference artifact's format by its name: CSV, else Parquet."""
    return "csv" if path.endswith(".csv") else "parquet"
