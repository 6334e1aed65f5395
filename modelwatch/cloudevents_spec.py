"""The ``cloudevents:`` section: which model version each request logger's events belong to.

Model servers' request loggers (KServe's InferenceLogger, Seldon Core's executor) post
an inference's request and its response as two CloudEvents to ``POST /v1/cloudevents``
(:mod:`collector.cloudevents`). ``services`` maps the inference service named by the
events (``inferenceservicename``, optionally qualified by its namespace) to a registered
model and version; an event may instead name them itself in the extension attributes
``modelwatchmodel`` and ``modelwatchversion``. A half whose partner has not arrived within
``pair_timeout`` is dropped and counted (``modelwatch_cloudevents_dropped_total``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from modelwatch.domain import NAME_PATTERN, VERSION_PATTERN
from modelwatch.durations import Duration

__all__ = [
    "DEFAULT_PAIR_TIMEOUT_S",
    "DROP_REASONS",
    "CloudEventsSpec",
    "ServiceTarget",
]

DEFAULT_PAIR_TIMEOUT_S = 600
DROP_REASONS = ("unpaired_request", "unpaired_response")
"""The ``reason`` label values of ``modelwatch_cloudevents_dropped_total``."""


class ServiceTarget(BaseModel):
    """The model version one inference service's events are stored under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    prediction_output: str | None = Field(
        None,
        description="v2 responses with several output tensors: the one holding the prediction "
        "(default: one named like the model's prediction column, or 'predict')",
    )
    scores_output: str | None = Field(
        None,
        description="v2 responses: the output tensor of class probabilities "
        "(default: one named 'predict_proba' or 'probabilities', if any)",
    )


class CloudEventsSpec(BaseModel):
    """The ``cloudevents:`` section."""

    model_config = ConfigDict(extra="forbid")

    services: dict[str, ServiceTarget] = Field(
        default_factory=dict,
        description="by inference service name, or '<namespace>/<name>' (tried first)",
    )
    pair_timeout: Duration = Field(
        DEFAULT_PAIR_TIMEOUT_S,
        ge=1,
        le=86_400,
        description="how long a request (or response) waits for its other half",
    )
