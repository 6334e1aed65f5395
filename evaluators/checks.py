"""Which checks a monitor runs: its own list, or the defaults for the model's task."""

from __future__ import annotations

from evaluators.base import UnknownMetricError, metric_keys
from modelwatch.domain import Task
from modelwatch.monitors import CheckSpec, MonitorSpec

__all__ = [
    "DEFAULT_CHECKS",
    "ESTIMATION_CHECKS",
    "LOSS_ESTIMATION_CHECKS",
    "resolve_checks",
    "unknown_checks",
]

_QUALITY_AND_COST = [
    "data_drift",
    # 1 false alarm in 720 no-drift windows, milliseconds per window once learnt (README);
    # domain_classifier (0 in 240) is opt-in: a second of CPU per window and segment.
    "reconstruction_error",
    "missing_rate",
    "out_of_range",
    "unseen_categories",
    "schema_violations",
    "constant_columns",
    "volume",
    "latency",
    "resource_per_1k",
    "cost_per_1k",
    "champion_challenger",
    "champion_challenger_sequential",
    "cost_diff",
]
DEFAULT_CHECKS: dict[Task, list[str]] = {
    Task.BINARY: [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "calibration_error",
        "confusion_matrix",
        *_QUALITY_AND_COST,
    ],
    Task.MULTICLASS: [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "confusion_matrix",
        *_QUALITY_AND_COST,
    ],
    Task.REGRESSION: ["mae", "rmse", "mape", "r2", "error_quantiles", *_QUALITY_AND_COST],
}


# Label-free estimates: in the defaults of classification models that send scores.
ESTIMATION_CHECKS = [
    "estimated_accuracy",
    "estimated_precision",
    "estimated_recall",
    "estimated_f1",
    "estimated_specificity",
    "estimated_roc_auc",
]
# Direct loss estimation: in the defaults of regression models whose reference has targets.
LOSS_ESTIMATION_CHECKS = ["estimated_mae", "estimated_rmse"]


def resolve_checks(
    spec: MonitorSpec, task: Task, scores: bool = False, targets: bool = False
) -> list[CheckSpec]:
    """The monitor's checks, or the task's defaults (every default key is registered), with
    the label-free estimates for a classification model that sends ``scores`` and for a
    regression model whose reference has ``targets``."""
    if spec.checks:
        return list(spec.checks)
    keys = DEFAULT_CHECKS[task]
    if scores and task is not Task.REGRESSION:
        keys = [*keys, *ESTIMATION_CHECKS]
    if targets and task is Task.REGRESSION:
        keys = [*keys, *LOSS_ESTIMATION_CHECKS]
    return [CheckSpec(metric=k) for k in keys]


def unknown_checks(spec: MonitorSpec) -> list[tuple[int, str]]:
    """(index, message) for every check whose metric key is not registered."""
    known = set(metric_keys())
    return [
        (i, str(UnknownMetricError(check.metric)))
        for i, check in enumerate(spec.checks)
        if check.metric not in known
    ]
