"""One contract over every registered metric: any task, any bad data, never a crash or false alarm.

Each metric gets every scenario below for each task it declares. Whatever it
computes, its results must be well-formed: its own key, a known status, a
finite value or none, p-values in [0, 1], ordered intervals; no ``error``
status; and below the minimum sample size never a ``breach``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from evaluators.base import EvalContext, Family, get_metric, metric_keys
from evaluators.checks import DEFAULT_CHECKS
from modelwatch.domain import ModelSpec, Task
from modelwatch.results import MetricResult, Status

# A window with too few events is exactly what a volume check exists to flag.
ALARMS_ON_LOW_TRAFFIC = {"volume"}

SPECS = {
    Task.BINARY: ModelSpec.model_validate(
        {
            "name": "b",
            "task": "binary",
            "scores": True,
            "features": [
                {"name": "x", "type": "numeric"},
                {"name": "c", "type": "categorical"},
                {"name": "flag", "type": "boolean"},
                {"name": "t", "type": "text"},
            ],
        }
    ),
    Task.MULTICLASS: ModelSpec.model_validate(
        {
            "name": "m",
            "task": "multiclass",
            "classes": ["a", "b", "c"],
            "scores": True,
            "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
        }
    ),
    Task.REGRESSION: ModelSpec.model_validate(
        {
            "name": "r",
            "task": "regression",
            "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
        }
    ),
}


def _frame(
    spec: ModelSpec, n: int, seed: int, *, shift: float = 0.0, labels: bool = True
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        "request_id": [f"r{i}" for i in range(n)],
        "timestamp": pl.Series(
            [datetime(2026, 1, 1, tzinfo=UTC)] * n, dtype=pl.Datetime("us", "UTC")
        ),
        "x": rng.normal(shift, 1.0, n),
        "c": rng.choice(["u", "v", "w"], n).tolist(),
    }
    names = {f.name for f in spec.features}
    if "flag" in names:
        cols["flag"] = (rng.random(n) < 0.3).tolist()
        cols["t"] = ["free text"] * n
    if spec.task is Task.REGRESSION:
        truth = rng.normal(10, 2, n)
        cols["prediction"] = truth + rng.normal(0, 1, n)
        cols["label"] = pl.Series(truth if labels else [None] * n, dtype=pl.Float64)
    else:
        classes = spec.class_list
        probs = rng.dirichlet(np.ones(len(classes)), n)
        picked = np.array(classes)[probs.argmax(axis=1)]
        cols["prediction"] = picked.tolist()
        truth = np.where(rng.random(n) < 0.7, picked, rng.choice(classes, n))
        cols["label"] = pl.Series(truth.tolist() if labels else [None] * n, dtype=pl.String)
        if spec.task is Task.BINARY:
            cols["score"] = probs[:, 1]
        else:
            for i, cls in enumerate(classes):
                cols[f"score_{cls}"] = probs[:, i]
    return pl.DataFrame(cols)


def _usage(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(
                [datetime(2026, 1, 1, tzinfo=UTC)] * n, dtype=pl.Datetime("us", "UTC")
            ),
            "latency_ms": rng.gamma(2, 5, n),
            "cpu_seconds": rng.gamma(2, 0.01, n),
            "memory_mb": np.full(n, 512.0),
            "gpu_seconds": pl.Series([None] * n, dtype=pl.Float64),
            "cost": pl.Series([None] * n, dtype=pl.Float64),
        }
    )


def _options() -> dict[str, object]:
    return {
        "window_hours": 1.0,
        "prices": {"cpu_hour": 0.1, "gpu_hour": 2.0, "gb_hour": 0.01},
        "expected_volume": 400.0,
        "rejected_events": 3,
    }


Scenario = Callable[[ModelSpec], EvalContext]


def _ctx(
    spec: ModelSpec, window: pl.DataFrame, baseline: pl.DataFrame | None, **kw: object
) -> EvalContext:
    challenger = kw.pop("challenger", window)
    usage = kw.pop("usage", _usage(window.height))
    options = {**_options(), "challenger_usage": usage, **kw.pop("options", {})}  # type: ignore[dict-item]
    return EvalContext(
        spec=spec,
        window=window,
        baseline=baseline,
        usage=usage,
        challenger=challenger,
        options=options,
        min_samples=30,
    )  # type: ignore[arg-type]


SCENARIOS: dict[str, Scenario] = {
    "normal": lambda s: _ctx(s, _frame(s, 400, 1), _frame(s, 2000, 2)),
    "drifted": lambda s: _ctx(s, _frame(s, 400, 1, shift=2.0), _frame(s, 2000, 2)),
    "empty": lambda s: _ctx(s, _frame(s, 400, 1).head(0), _frame(s, 2000, 2), usage=_usage(0)),
    "below_min_samples": lambda s: _ctx(s, _frame(s, 5, 1), _frame(s, 2000, 2), usage=_usage(5)),
    "no_baseline": lambda s: _ctx(s, _frame(s, 400, 1), None),
    "no_labels": lambda s: _ctx(s, _frame(s, 400, 1, labels=False), _frame(s, 2000, 2)),
    "single_class": lambda s: _ctx(
        s,
        _frame(s, 400, 1).with_columns(
            pl.col("label").fill_null(strategy="forward").first().over(pl.lit(1)).alias("label")
        ),
        _frame(s, 2000, 2),
    ),
    "constant_features": lambda s: _ctx(
        s,
        _frame(s, 400, 1).with_columns(pl.lit(1.0).alias("x"), pl.lit("u").alias("c")),
        _frame(s, 2000, 2),
    ),
    "unseen_categories": lambda s: _ctx(
        s, _frame(s, 400, 1).with_columns(pl.lit("zzz").alias("c")), _frame(s, 2000, 2)
    ),
    "nulls_everywhere": lambda s: _ctx(
        s,
        _frame(s, 400, 1).with_columns(
            pl.lit(None, dtype=pl.Float64).alias("x"), pl.lit(None, dtype=pl.String).alias("c")
        ),
        _frame(s, 2000, 2),
    ),
    "no_usage": lambda s: _ctx(s, _frame(s, 400, 1), _frame(s, 2000, 2), usage=_usage(0)),
    "split_traffic": lambda s: _ctx(
        s,
        _frame(s, 400, 1),
        _frame(s, 2000, 2),
        challenger=_frame(s, 300, 9).with_columns(("x" + pl.col("request_id")).alias("request_id")),
    ),
}


def _cases() -> list[tuple[str, Task, str]]:
    return [
        (key, task, name)
        for key in metric_keys()
        if not key.startswith("test_")
        for task in sorted(get_metric(key).tasks)
        for name in SCENARIOS
    ]


def _check(result: MetricResult, key: str, scenario: str) -> None:
    assert isinstance(result, MetricResult)
    assert result.metric == key
    assert isinstance(result.status, Status)
    assert result.status is not Status.ERROR, result.detail
    assert isinstance(result.n, int) and result.n >= 0
    if result.value is not None:
        assert math.isfinite(result.value), result
    if result.p_value is not None:
        assert 0.0 <= result.p_value <= 1.0, result
    if result.ci_low is not None and result.ci_high is not None:
        assert result.ci_low <= result.ci_high + 1e-12, result
    if result.band_low is not None or result.band_high is not None:
        assert result.band_low is not None and result.band_high is not None, result
        assert result.band_low <= result.band_high + 1e-12, result
    if result.status is Status.INSUFFICIENT_DATA:
        assert result.value is None, result
    if scenario in ("empty", "below_min_samples") and key not in ALARMS_ON_LOW_TRAFFIC:
        assert result.status is not Status.BREACH, result


def test_there_are_metrics_in_every_family() -> None:
    families = {get_metric(k).family for k in metric_keys() if not k.startswith("test_")}
    assert families == set(Family), families


def test_every_default_check_is_registered() -> None:
    assert set(DEFAULT_CHECKS) == set(Task)
    known = set(metric_keys())
    for task, keys in DEFAULT_CHECKS.items():
        assert set(keys) <= known, (task, sorted(set(keys) - known))


@pytest.mark.parametrize(("key", "task", "scenario"), _cases())
def test_metric_contract(key: str, task: Task, scenario: str) -> None:
    spec = SPECS[task]
    ctx = SCENARIOS[scenario](spec)
    results = get_metric(key).compute(ctx)
    assert isinstance(results, list) and results, f"{key} returned no result for {scenario}"
    for result in results:
        _check(result, key, scenario)
