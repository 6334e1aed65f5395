"""Pipelines (the ``pipelines`` config section) and the policy actions that call them.

A pipeline is an HTTP endpoint of a training or deployment system (Airflow,
Argo, Kubeflow, GitHub Actions, Jenkins, anything) that modelwatch calls with
signed webhooks (:mod:`modelwatch.webhooks`). A policy's ``actions`` say what a
firing alert does: ``notify`` (route it to receivers), ``retrain`` (call a
pipeline) and ``promote`` (move the champion alias to the challenger, optionally
after approval, then optionally call a deployment pipeline).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelwatch.domain import NAME_PATTERN
from modelwatch.durations import Duration
from modelwatch.webhooks import secret_key

__all__ = ["Action", "PipelineSpec", "PromoteAction", "RetrainAction", "pipeline_refs"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^https?://", description="where the webhook is POSTed")
    secrets: list[str] = Field(
        min_length=1,
        description="whsec_ secrets; every one signs each delivery (list new and old to rotate)",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. the pipeline's auth")
    max_age: Duration = Field(3 * 86_400, description="retry a delivery for this long")
    timeout: Duration = Field(10, ge=1)
    training_data: dict[str, Any] = Field(
        default_factory=dict, description="hints passed to the pipeline, e.g. a table or a query"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_secret(cls, value: Any) -> Any:
        if isinstance(value, dict) and "secret" in value:
            value = dict(value)
            one = value.pop("secret")
            value["secrets"] = [one, *value.get("secrets", [])]
        return value

    @field_validator("secrets")
    @classmethod
    def _well_formed(cls, value: list[str]) -> list[str]:
        for i, secret in enumerate(value):
            try:
                secret_key(secret)
            except ValueError as exc:
                raise ValueError(
                    f"secrets[{i}]: {exc} (make one with 'modelwatch webhooks secret')"
                ) from None
        return value


class RetrainAction(_Strict):
    pipeline: str
    cooldown: Duration = Field(6 * 3600, description="no second request for the model sooner")
    training_data: dict[str, Any] = Field(
        default_factory=dict, description="hints merged over the pipeline's own"
    )


class PromoteAction(_Strict):
    require_approval: bool = Field(False, description="wait for POST /v1/approvals/{id}")
    deploy: str | None = Field(None, description="a pipeline told about the new champion")


class Action(_Strict):
    """Exactly one of ``notify``, ``retrain``, ``promote``; the string ``notify`` is short
    for ``{notify: true}``."""

    notify: bool | None = None
    retrain: RetrainAction | None = None
    promote: PromoteAction | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value == "notify":
            return {"notify": True}
        if value in ("retrain", "promote"):
            raise ValueError(f"{value!r} needs settings, e.g. {{{value}: {{...}}}}")
        if isinstance(value, str):
            raise ValueError(f"unknown action {value!r}; known: notify, retrain, promote")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of notify, retrain, promote; got {given or 'none'}")
        return self


def pipeline_refs(actions: list[Action]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each pipeline ``actions`` call, with the path of the field naming it."""
    for j, action in enumerate(actions):
        if action.retrain is not None:
            yield ("actions", j, "retrain", "pipeline"), action.retrain.pipeline
        if action.promote is not None and action.promote.deploy is not None:
            yield ("actions", j, "promote", "deploy"), action.promote.deploy
