"""Pipeline callbacks: progress, failure, and finally the new version with its reference.

A succeeded callback registers the new version with the ``challenger`` alias and
stores its reference data, so the monitors start comparing it with the
champion. The reference is parsed and validated before anything is written; a
repeated callback for a retrain already completed with the same version is
answered as before and changes nothing. A signed callback is applied once: a copy
with the same ``webhook-id`` (a pipeline retrying after a timeout, or a replay) is
answered with the retrain's current state and changes nothing, not even the audit log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelwatch.domain import VERSION_PATTERN, Alias
from modelwatch.errors import ConflictError, FieldError, ValidationFailed
from modelwatch.store import audit
from modelwatch.store.engine import Store
from modelwatch.store.receipts import Receipt, Receipts
from modelwatch.store.references import ReferenceStore, sha256_hex
from modelwatch.store.registry import ModelRecord, Registry
from modelwatch.store.retrain import (
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    RUNNING,
    RetrainRequest,
    RetrainStore,
)
from modelwatch.webhooks import DEFAULT_TOLERANCE_S

__all__ = ["RECEIPT_KEEP_S", "CallbackIn", "CallbackService", "MlflowReference", "ReferenceParser"]

# A copy's timestamp may stand up to the tolerance before or after now, so a receipt
# outlives the first copy by twice the tolerance.
RECEIPT_KEEP_S = 2 * DEFAULT_TOLERANCE_S

# (model, raw bytes, format hint) -> (frame in the reference layout, format, ignored columns)
ReferenceParser = Callable[[ModelRecord, bytes, str | None], tuple[pl.DataFrame, str, list[str]]]
# (model name, MLflow version) -> (the reference artifact's bytes, its format)
MlflowReference = Callable[[str, str], tuple[bytes, str]]


class ReferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "parquet"]
    base64: str = Field(description="the file's bytes, base64-encoded")


class NewVersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN)
    description: str = ""
    reference: ReferenceIn | None = None
    mlflow_version: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="instead of reference: the MLflow version (of the registered model the "
        "model follows) whose run's reference artifact is the reference",
    )

    @model_validator(mode="after")
    def _one_reference(self) -> NewVersionIn:
        if self.reference is not None and self.mlflow_version is not None:
            raise ValueError("give reference or mlflow_version, not both")
        return self


class CallbackIn(BaseModel):
    """What a pipeline reports about a retrain it was asked for."""

    model_config = ConfigDict(extra="forbid")

    retrain_id: str = Field(description="data.retrain_id of the retrain.requested webhook")
    status: Literal["running", "succeeded", "failed"]
    progress: float | None = Field(None, ge=0, le=1)
    message: str = ""
    version: NewVersionIn | None = Field(None, description="required when status is succeeded")


@dataclass(frozen=True)
class _Reference:
    frame: pl.DataFrame
    fmt: str
    digest: str


class CallbackService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        parse_reference: ReferenceParser,
        receipts: Receipts | None = None,
        mlflow_reference: MlflowReference | None = None,
    ) -> None:
        self.store = store
        self.receipts = receipts or Receipts(store, RECEIPT_KEEP_S)
        self.registry = registry
        self.retrain = RetrainStore(store)
        self.references = ReferenceStore(store)
        self.parse_reference = parse_reference
        self.mlflow_reference = mlflow_reference

    def handle(
        self, body: CallbackIn, actor: str, receipt: Receipt | None = None
    ) -> dict[str, Any]:
        """Apply ``body``; with a ``receipt`` (a signed delivery) at most once per receipt."""
        request = self.retrain.by_uid(body.retrain_id)
        if receipt is not None and self.receipts.seen(receipt):
            return self._answer(request.uid)
        model = self.registry.model_by_id(request.model_id)
        if body.status == "succeeded":
            return self._succeeded(body, request, model, actor, receipt)
        status = RUNNING if body.status == "running" else FAILED
        with self.store.write() as conn:
            if receipt is not None and not self.receipts.claim(conn, receipt):
                return self._answer(request.uid)
            moved = self.retrain.set_status(
                conn, request.uid, status, progress=body.progress, reason=body.message[:500]
            )
            audit.record(
                conn,
                actor,
                f"retrain.{body.status}",
                model=model.name,
                subject=request.uid,
                details={"progress": body.progress, "message": body.message, "applied": moved},
            )
        if not moved:
            raise ConflictError(
                f"retrain {request.uid} is {request.status}; it cannot become {status}"
            )
        return self._answer(request.uid)

    def _succeeded(
        self,
        body: CallbackIn,
        request: RetrainRequest,
        model: ModelRecord,
        actor: str,
        receipt: Receipt | None,
    ) -> dict[str, Any]:
        if body.version is None:
            raise ValidationFailed(
                [FieldError(("version",), "a succeeded retrain reports its new version")]
            )
        if request.status == COMPLETED:
            done = (
                self.registry.version_by_id(request.new_version_id).version
                if request.new_version_id is not None
                else None
            )
            if done == body.version.version:
                return self._answer(request.uid)
            raise ConflictError(f"retrain {request.uid} already completed with version {done!r}")
        if request.status not in IN_FLIGHT:
            raise ConflictError(f"retrain {request.uid} is {request.status}; it cannot succeed")
        reference = self._reference(model, body.version.reference)
        if body.version.mlflow_version is not None:
            reference = self._mlflow_reference(model, body.version.mlflow_version)
        version = self.registry.create_version(
            model, body.version.version, Alias.CHALLENGER, actor, body.version.description
        )
        if reference is not None:
            self.references.save(
                model, version, reference.frame, reference.fmt, reference.digest, actor
            )
        with self.store.write() as conn:
            if receipt is not None and not self.receipts.claim(conn, receipt):
                return self._answer(request.uid)
            self.retrain.set_status(
                conn, request.uid, COMPLETED, progress=1.0, new_version_id=version.id
            )
            audit.record(
                conn,
                actor,
                "retrain.completed",
                model=model.name,
                version=version.version,
                subject=request.uid,
                details={"message": body.message, "reference_rows": _rows(reference)},
            )
        return self._answer(request.uid)

    def _reference(self, model: ModelRecord, ref: ReferenceIn | None) -> _Reference | None:
        if ref is None:
            return None
        try:
            data = base64.b64decode(ref.base64, validate=True)
        except (binascii.Error, ValueError):
            loc = ("version", "reference", "base64")
            raise ValidationFailed([FieldError(loc, "not valid base64")]) from None
        try:
            frame, fmt, _ = self.parse_reference(model, data, ref.format)
        except ValidationFailed as exc:  # name the field in the callback body, not the file
            at = ("version", "reference")
            raise ValidationFailed(
                [FieldError((*at, *e.loc), e.msg, e.input) for e in exc.errors]
            ) from None
        return _Reference(frame, fmt, sha256_hex(data))

    def _mlflow_reference(self, model: ModelRecord, mlflow_version: str) -> _Reference:
        if self.mlflow_reference is None:
            loc = ("version", "mlflow_version")
            message = "no mlflow: section is configured; upload the reference instead"
            raise ValidationFailed([FieldError(loc, message, mlflow_version)])
        data, fmt = self.mlflow_reference(model.name, mlflow_version)
        try:
            frame, fmt, _ = self.parse_reference(model, data, fmt)
        except ValidationFailed as exc:
            at = ("version", "mlflow_version")
            raise ValidationFailed(
                [FieldError((*at, *e.loc), e.msg, e.input) for e in exc.errors]
            ) from None
        return _Reference(frame, fmt, sha256_hex(data))

    def _answer(self, uid: str) -> dict[str, Any]:
        return self.retrain.by_uid(uid).to_json()


def _rows(reference: _Reference | None) -> int:
    return 0 if reference is None else reference.frame.height
