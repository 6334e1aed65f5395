"""The MLflow registry sync as declared: which registered models modelwatch follows.

::

    mlflow:
      tracking_uri: http://mlflow:5000
      interval: 1m
      models:
        - registered_model: churn-classifier
          model: churn
          reference_artifact: reference.parquet
          aliases: {champion: champion, challenger: challenger}

Every version of ``churn-classifier`` becomes a version of ``churn`` (same number),
with the run's ``reference_artifact`` as its reference; each MLflow alias named in
``aliases`` moves the modelwatch alias it maps to, and a move made in modelwatch moves
the MLflow alias. Credentials come from the environment (``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelwatch.domain import Alias
from modelwatch.durations import Duration

__all__ = ["DEFAULT_ALIASES", "MlflowModelSpec", "MlflowSpec"]

DEFAULT_ALIASES = {"champion": Alias.CHAMPION, "challenger": Alias.CHALLENGER}


class MlflowModelSpec(BaseModel):
    """One registered model and the modelwatch model it is."""

    model_config = ConfigDict(extra="forbid")

    registered_model: str = Field(min_length=1, description="the name in MLflow's registry")
    model: str = Field(min_length=1, description="the modelwatch model")
    aliases: dict[str, Alias] = Field(
        default_factory=lambda: dict(DEFAULT_ALIASES),
        description="MLflow alias -> modelwatch alias",
    )
    reference_artifact: str | None = Field(
        None, description="a Parquet or CSV artifact of the version's run: its reference"
    )

    @field_validator("aliases")
    @classmethod
    def _one_each(cls, aliases: dict[str, Alias]) -> dict[str, Alias]:
        targets = list(aliases.values())
        twice = sorted({a.value for a in targets if targets.count(a) > 1})
        if twice:
            raise ValueError(f"each modelwatch alias is mapped once (twice: {twice})")
        return aliases


class MlflowSpec(BaseModel):
    """The ``mlflow:`` section."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="http(s):// URL of the MLflow tracking server")
    interval: Duration = Field(60, ge=5, description="between syncs")
    models: list[MlflowModelSpec] = Field(min_length=1)

    @field_validator("tracking_uri")
    @classmethod
    def _http(cls, uri: str) -> str:
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"{uri!r}: the tracking server's http:// or https:// URL")
        return uri.rstrip("/")

    @field_validator("models")
    @classmethod
    def _distinct(cls, models: list[MlflowModelSpec]) -> list[MlflowModelSpec]:
        names = [m.model for m in models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"each modelwatch model follows one registered model: {twice}")
        return models
