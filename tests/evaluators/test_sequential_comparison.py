"""The sequential champion/challenger comparison: its summed statistics against numpy on the
raw differences (log loss against scikit-learn), the sum over windows, and seeded
simulations of hourly looks through the metric and the promotion condition."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
import pytest
from pydantic import ValidationError
from sklearn.metrics import log_loss

from alerts.conditions import evaluate, needed_metrics
from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from evaluators.metrics.comparison_sequential import (
    CHAMPION_OPTION,
    KEY,
    PRIOR_OPTION,
    decision,
)
from modelwatch.domain import ModelSpec
from modelwatch.policies import Condition
from modelwatch.sequential import paired, two_sample

FEATURES = [{"name": "x", "type": "numeric"}]
BINARY = ModelSpec.model_validate(
    {"name": "b", "task": "binary", "features": FEATURES, "classes": ["0", "1"], "scores": True}
)
REGRESSION = ModelSpec.model_validate({"name": "r", "task": "regression", "features": FEATURES})
Floats = npt.NDArray[np.float64]
EPS = float(np.finfo(np.float64).eps)


def _binary(ids: list[str], truth: Floats, score: Floats) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": ids,
            "prediction": (score >= 0.5).astype(int).astype(str),
            "score": score,
            "label": truth.astype(int).astype(str),
        }
    )


def _run(
    spec: ModelSpec,
    champion: pl.DataFrame,
    challenger: pl.DataFrame,
    prior: list[tuple[int, str, str]] | None = None,
    champion_version: str = "v1",
    **options: Any,
) -> dict[str | None, MetricResult]:
    ctx = EvalContext(
        spec=spec,
        window=champion,
        challenger=challenger,
        options={PRIOR_OPTION: prior or [], CHAMPION_OPTION: champion_version, **options},
    )
    return {r.label: r for r in get_metric(KEY).compute(ctx)}


def _detail(r: MetricResult) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(r.detail)
    return value


def _triple(x: Floats) -> list[float]:
    return [float(x.size), float(x.sum()), float((x * x).sum())]


def _scored(rng: np.random.Generator, n: int, skill: float) -> tuple[Floats, Floats]:
    truth = (rng.random(n) < 0.3).astype(np.float64)
    logit = np.where(truth == 1, skill, -skill) + rng.normal(0, 1.0, n)
    return truth, 1.0 / (1.0 + np.exp(-logit))


def test_registered_in_the_comparison_family_and_the_defaults() -> None:
    from evaluators.checks import DEFAULT_CHECKS

    assert KEY in metric_keys(Family.COMPARISON)
    assert all(KEY in keys for keys in DEFAULT_CHECKS.values())


def test_shadow_statistics_are_the_paired_differences() -> None:
    rng = np.random.default_rng(5)
    truth, s1 = _scored(rng, 800, 0.8)
    s2 = 1.0 / (1.0 + np.exp(-(np.log(s1 / (1 - s1)) + rng.normal(0.2, 0.7, 800))))
    ids = [f"r{i}" for i in range(800)]
    out = _run(BINARY, _binary(ids, truth, s1), _binary(ids, truth, s2))

    hit1 = ((s1 >= 0.5) == (truth == 1)).astype(float)
    hit2 = ((s2 >= 0.5) == (truth == 1)).astype(float)
    acc = _detail(out["accuracy"])
    assert acc["mode"] == "shadow" and acc["champion"] == "v1" and acc["windows"] == 1
    assert acc["window"]["pairs"] == pytest.approx(_triple(hit2 - hit1), rel=1e-12)
    seq = paired(*_triple(hit2 - hit1))
    assert out["accuracy"].value == pytest.approx(hit2.mean() - hit1.mean())
    assert (out["accuracy"].ci_low, out["accuracy"].ci_high) == pytest.approx(
        (float(seq.low), float(seq.high))
    )
    assert out["accuracy"].n == 800

    def losses(p: Floats) -> Floats:
        return np.asarray(-np.log(np.clip(np.where(truth == 1, p, 1 - p), EPS, 1 - EPS)))

    ll = _detail(out["log_loss"])["window"]["pairs"]
    assert ll == pytest.approx(_triple(losses(s2) - losses(s1)), rel=1e-10)
    # the per-request losses are scikit-learn's log loss
    assert ll[1] / 800 == pytest.approx(
        log_loss(truth, s2, labels=[0, 1]) - log_loss(truth, s1, labels=[0, 1]), rel=1e-9
    )


def test_split_statistics_are_each_sides_own() -> None:
    rng = np.random.default_rng(9)
    t1, t2 = rng.normal(0, 1, 300), rng.normal(0, 1, 500)
    p1, p2 = t1 + rng.normal(0, 1.0, 300), t2 + rng.normal(0.1, 0.8, 500)

    def frame(prefix: str, truth: Floats, pred: Floats) -> pl.DataFrame:
        ids = [f"{prefix}{i}" for i in range(truth.size)]
        return pl.DataFrame({"request_id": ids, "prediction": pred, "label": truth})

    out = _run(REGRESSION, frame("a", t1, p1), frame("b", t2, p2))
    assert set(out) == {"mae", "mse"}
    mae = _detail(out["mae"])
    assert mae["mode"] == "split"
    assert mae["window"]["champion"] == pytest.approx(_triple(np.abs(p1 - t1)), rel=1e-12)
    assert mae["window"]["challenger"] == pytest.approx(_triple(np.abs(p2 - t2)), rel=1e-12)
    mse = _detail(out["mse"])["window"]
    assert mse["challenger"] == pytest.approx(_triple((p2 - t2) ** 2), rel=1e-12)
    seq = two_sample(tuple(mse["champion"]), tuple(mse["challenger"]))
    assert out["mse"].ci_low == pytest.approx(float(seq.low))
    assert out["mse"].value == pytest.approx(np.mean((p2 - t2) ** 2) - np.mean((p1 - t1) ** 2))


def _prior(results: dict[str | None, MetricResult], start: int) -> list[tuple[int, str, str]]:
    return [(start, str(r.label), r.detail) for r in results.values()]


def test_windows_are_summed_against_the_same_champion_only() -> None:
    rng = np.random.default_rng(2)
    diffs = []
    prior: list[tuple[int, str, str]] = []
    for w in range(3):
        truth, s1 = _scored(rng, 200, 0.6)
        s2 = np.clip(s1 + rng.normal(0, 0.2, 200), 0, 1)
        ids = [f"w{w}r{i}" for i in range(200)]
        out = _run(BINARY, _binary(ids, truth, s1), _binary(ids, truth, s2), prior)
        hit1 = ((s1 >= 0.5) == (truth == 1)).astype(float)
        hit2 = ((s2 >= 0.5) == (truth == 1)).astype(float)
        diffs.append(hit2 - hit1)
        prior += _prior(out, w * 3600)
    every = np.concatenate(diffs)
    detail = _detail(out["accuracy"])
    assert detail["windows"] == 3 and detail["since_us"] == 0
    assert detail["total"]["pairs"] == pytest.approx(_triple(every), rel=1e-12)
    assert out["accuracy"].n == 600
    assert out["accuracy"].p_value == pytest.approx(float(paired(*_triple(every)).p_value))
    # a new champion starts a new sum
    again = _run(BINARY, _binary(ids, truth, s1), _binary(ids, truth, s2), prior, "v3")
    assert _detail(again["accuracy"])["windows"] == 1 and again["accuracy"].n == 200


def test_cost_difference_per_1000_predictions_over_the_windows() -> None:
    ids = [f"r{i}" for i in range(100)]
    truth, s = _scored(np.random.default_rng(0), 100, 1.0)
    usage = pl.DataFrame({"cost": [0.5, 0.5]})
    out = _run(
        BINARY,
        _binary(ids, truth, s),
        _binary(ids, truth, s),
        challenger_usage=pl.DataFrame({"cost": [2.0]}),
    )
    assert _detail(out["accuracy"])["cost_diff_per_1k"] is None  # no champion usage
    ctx = EvalContext(
        spec=BINARY,
        window=_binary(ids, truth, s),
        challenger=_binary(ids, truth, s),
        usage=usage,
        options={"challenger_usage": pl.DataFrame({"cost": [2.0]}), CHAMPION_OPTION: "v1"},
    )
    (first, *_) = get_metric(KEY).compute(ctx)
    assert _detail(first)["cost_diff_per_1k"] == pytest.approx(1000 * (2.0 - 1.0) / 100)
    ctx2 = EvalContext(
        spec=BINARY,
        window=_binary(ids, truth, s),
        challenger=_binary(ids, truth, s),
        usage=pl.DataFrame({"cost": [3.0]}),
        options={
            "challenger_usage": pl.DataFrame({"cost": [1.0]}),
            CHAMPION_OPTION: "v1",
            PRIOR_OPTION: [(0, "accuracy", first.detail)],
        },
    )
    (second, *_) = get_metric(KEY).compute(ctx2)
    assert _detail(second)["cost_diff_per_1k"] == pytest.approx(1000 * (3.0 - 4.0) / 200)


def test_statuses_and_bad_options() -> None:
    ids = [f"r{i}" for i in range(3)]
    truth, s = _scored(np.random.default_rng(0), 3, 1.0)
    frame = _binary(ids, truth, s)
    out = _run(BINARY, frame.head(1), frame.head(1))
    assert out["accuracy"].status is Status.INSUFFICIENT_DATA
    assert _detail(out["accuracy"])["window"]["pairs"][0] == 1  # still counted later
    ctx = EvalContext(spec=BINARY, window=frame, challenger=None)
    assert {r.status for r in get_metric(KEY).compute(ctx)} == {Status.NOT_APPLICABLE}
    bad = _run(BINARY, frame, frame, alpha=2)
    assert bad["accuracy"].status is Status.ERROR and "'alpha'" in bad["accuracy"].detail
    bad = _run(BINARY, frame, frame, mode="both")
    assert bad["accuracy"].status is Status.ERROR and "'mode'" in bad["accuracy"].detail
    assert decision(0.01, 0.02, False) == "challenger_better"
    assert decision(0.01, 0.02, True) == "champion_better"
    assert decision(-0.01, 0.02, False) == "undecided"
    assert decision(math.nan, math.nan, False) == "undecided"


# --- through the condition -----------------------------------------------------------

RESULT_SCHEMA = {
    "version_id": pl.Int64,
    "window_start_us": pl.Int64,
    "metric": pl.String,
    "label": pl.String,
    "segment": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "status": pl.String,
    "detail": pl.String,
}


def _frame(rows: list[tuple[int, MetricResult]]) -> pl.DataFrame:
    data = [
        (2, start, r.metric, r.label or "", "", r.value, r.ci_low, r.ci_high, r.status, r.detail)
        for start, r in rows
    ]
    return pl.DataFrame(data, schema=RESULT_SCHEMA, orient="row")


def _looks(gain: float, hours: int, seed: int, per_hour: int = 400) -> list[int]:
    """Hourly shadow windows (champion right with p 0.80, the challenger independently with
    0.80 + gain) through the metric, the per-window comparison and both tests; the hours at
    which each condition fires."""
    rng = np.random.default_rng(seed)
    sequential = Condition.model_validate({"challenger_beats_champion": {"metric": "accuracy"}})
    window = Condition.model_validate(
        {"challenger_beats_champion": {"metric": "accuracy", "test": "window"}}
    )
    prior: list[tuple[int, str, str]] = []
    rows: list[tuple[int, MetricResult]] = []
    spec = BINARY.model_copy(update={"scores": False})
    ids = [f"r{i}" for i in range(per_hour)]
    for hour in range(hours):
        truth = (rng.random(per_hour) < 0.5).astype(int)
        right1 = rng.random(per_hour) < 0.80
        right2 = rng.random(per_hour) < 0.80 + gain
        frames = [
            pl.DataFrame(
                {
                    "request_id": ids,
                    "prediction": np.where(right, truth, 1 - truth).astype(str),
                    "label": truth.astype(str),
                }
            )
            for right in (right1, right2)
        ]
        ctx = EvalContext(spec=spec, window=frames[0], challenger=frames[1])
        rows += [(hour, r) for r in get_metric("champion_challenger").compute(ctx)]
        out = _run(spec, frames[0], frames[1], prior)
        prior += _prior(out, hour)
        rows += [(hour, r) for r in out.values()]
    frame = _frame(rows)
    fired = []
    for condition in (sequential, window):
        verdicts = evaluate(condition, frame, champion_id=1)
        fired.append(next((v.window_start_us for v in verdicts if v.breach), -1))
    return fired


def test_equal_models_are_never_promoted_over_many_looks() -> None:
    """Per-window tests, looked at hourly, promote an equal challenger; the sequence does not."""
    firsts = [_looks(0.0, 240, seed) for seed in (1, 2, 3)]
    assert [seq for seq, _ in firsts] == [-1, -1, -1]
    assert all(window >= 0 for _, window in firsts)


def test_a_challenger_two_points_better_is_promoted() -> None:
    sequential, _ = _looks(0.02, 240, 4)
    assert 0 < sequential < 240


def test_the_condition_reads_the_sequential_metric_at_its_own_alpha() -> None:
    rng = np.random.default_rng(8)
    truth, s1 = _scored(rng, 600, 0.5)
    s2 = 1.0 / (1.0 + np.exp(-(np.where(truth == 1, 1.5, -1.5) + rng.normal(0, 1.0, 600))))
    ids = [f"r{i}" for i in range(600)]
    out = _run(BINARY, _binary(ids, truth, s1), _binary(ids, truth, s2))
    frame = _frame([(0, r) for r in out.values()])
    total = _detail(out["log_loss"])["total"]["pairs"]
    loose = paired(total[0], total[1], total[2], alpha=0.5)
    assert float(loose.high) < 0  # the challenger's log loss is lower
    cond = {"metric": "log_loss", "alpha": 0.5}
    (verdict,) = evaluate(Condition.model_validate({"challenger_beats_champion": cond}), frame, 1)
    assert verdict.breach and verdict.metric == KEY
    big = {**cond, "margin": -float(loose.high) + 1e-9}
    (verdict,) = evaluate(Condition.model_validate({"challenger_beats_champion": big}), frame, 1)
    assert not verdict.breach
    assert needed_metrics(Condition.model_validate({"challenger_beats_champion": cond})) == {KEY}


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        ({"metric": "accuracy", "test": "weekly"}, "test"),
        ({"metric": "accuracy", "alpha": 1.5}, "alpha"),
        ({"metric": "accuracy", "alpha": 0}, "alpha"),
        ({"metric": "f1"}, "'f1'"),
        ({"metric": "accuracy", "margin": -0.1}, "margin"),
    ],
)
def test_bad_config_names_the_key_and_value(condition: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        Condition.model_validate({"challenger_beats_champion": condition})
    assert named in str(info.value)


def test_f1_keeps_the_per_window_test() -> None:
    cond = Condition.model_validate(
        {"challenger_beats_champion": {"metric": "f1", "test": "window"}}
    )
    assert needed_metrics(cond) == {"champion_challenger"}
