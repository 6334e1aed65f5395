"""Retention as declared: how long each model's data stays in the hot store.

Raw data (prediction events, labels, usage samples and rejected-batch records)
is kept for ``raw`` after its window can no longer change: after the window has
closed and the longest label delay of the model's monitors has passed. Results
and evaluation runs are kept for ``results`` (default: for ever), and never less
than the monitors' backfill, so the planner never re-plans a window whose run
was removed. Alerts, audit records and references are kept.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from modelwatch.durations import Duration

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_RAW_S",
    "ModelRetention",
    "RetentionSpec",
]

DEFAULT_RAW_S = 30 * 86_400
DEFAULT_INTERVAL_S = 3600
DEFAULT_BATCH_ROWS = 5000
MIN_RAW_S = 3600


class ModelRetention(BaseModel):
    """One model's retention; a field left out takes the deployment's default."""

    model_config = ConfigDict(extra="forbid")

    raw: Duration | None = Field(
        None,
        ge=MIN_RAW_S,
        description="how long raw events, labels and usage stay after their window is final",
    )
    results: Duration | None = Field(
        None, ge=86_400, description="how long results and runs stay (default: for ever)"
    )


class RetentionSpec(BaseModel):
    """The ``retention:`` section: deployment defaults, per-model overrides, the job's pace."""

    model_config = ConfigDict(extra="forbid")

    raw: Duration = Field(DEFAULT_RAW_S, ge=MIN_RAW_S, description="default for every model")
    results: Duration | None = Field(None, ge=86_400, description="default: kept for ever")
    interval: Duration = Field(
        DEFAULT_INTERVAL_S, ge=60, description="how often the scheduler applies retention"
    )
    batch_rows: int = Field(
        DEFAULT_BATCH_ROWS,
        ge=100,
        le=100_000,
        description="rows deleted per transaction, so no lock is held for long",
    )
    models: dict[str, ModelRetention] = Field(
        default_factory=dict, description="per model, by name"
    )
