"""Repeated looks through the product path: the ``champion_challenger_sequential`` metric
window by window (each window summing the earlier ones' stored statistics, as the runner
hands them over) and the ``challenger_beats_champion`` condition, sequential and
per-window, over the stored results.

Each run is ``hours`` hourly windows of ``per_hour`` shadow requests; the champion is
right with probability 0.80 and the challenger, independently per request, with 0.80
(equal) or 0.82 (+2 points). A run promotes at the first hour its condition breaches.

    .venv/bin/python -m bench.sequential_policy [--runs 20] [--hours 240] [--per-hour 400]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from alerts.conditions import evaluate
from evaluators.base import EvalContext, MetricResult, get_metric
from evaluators.metrics.comparison_sequential import CHAMPION_OPTION, KEY, PRIOR_OPTION
from modelwatch.domain import ModelSpec
from modelwatch.policies import Condition

SPEC = ModelSpec.model_validate(
    {"name": "b", "task": "binary", "features": [{"name": "x", "type": "numeric"}]}
)
SCHEMA = {
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
CONDITIONS = {
    test: Condition.model_validate(
        {"challenger_beats_champion": {"metric": "accuracy", "test": test}}
    )
    for test in ("sequential", "window")
}


def _frames(rng: np.random.Generator, n: int, gain: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    truth = (rng.random(n) < 0.5).astype(int)
    ids = [f"r{i}" for i in range(n)]
    frames = []
    for p in (0.80, 0.80 + gain):
        right = rng.random(n) < p
        prediction = np.where(right, truth, 1 - truth).astype(str)
        frames.append(
            pl.DataFrame({"request_id": ids, "prediction": prediction, "label": truth.astype(str)})
        )
    return frames[0], frames[1]


def one_run(gain: float, hours: int, per_hour: int, seed: int) -> dict[str, int]:
    """The first hour (0-based) each condition breaches; -1 for never."""
    rng = np.random.default_rng(seed)
    prior: list[tuple[int, str, str]] = []
    rows: list[tuple[int, MetricResult]] = []
    window_metric, sequential_metric = get_metric("champion_challenger"), get_metric(KEY)
    for hour in range(hours):
        champion, challenger = _frames(rng, per_hour, gain)
        ctx = EvalContext(spec=SPEC, window=champion, challenger=challenger)
        rows += [(hour, r) for r in window_metric.compute(ctx)]
        options = {PRIOR_OPTION: prior, CHAMPION_OPTION: "v1"}
        ctx = EvalContext(spec=SPEC, window=champion, challenger=challenger, options=options)
        out = sequential_metric.compute(ctx)
        prior = prior + [(hour, str(r.label), r.detail) for r in out]
        rows += [(hour, r) for r in out]
    data = [
        (2, h, r.metric, r.label or "", "", r.value, r.ci_low, r.ci_high, r.status, r.detail)
        for h, r in rows
    ]
    frame = pl.DataFrame(data, schema=SCHEMA, orient="row")
    first = {}
    for test, condition in CONDITIONS.items():
        breaches = [v.window_start_us for v in evaluate(condition, frame, 1) if v.breach]
        first[test] = min(breaches) if breaches else -1
    return first


def simulate(runs: int, hours: int, per_hour: int, seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, gain in (("equal", 0.0), ("plus2", 0.02)):
        firsts = [one_run(gain, hours, per_hour, seed + 1000 * (gain > 0) + r) for r in range(runs)]
        for test in CONDITIONS:
            hit = [f[test] for f in firsts if f[test] >= 0]
            out[f"{name}_{test}_promoted"] = len(hit) / runs
            out[f"{name}_{test}_median_hour"] = float(np.median(hit)) + 1 if hit else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--hours", type=int, default=240)
    parser.add_argument("--per-hour", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    figures = simulate(args.runs, args.hours, args.per_hour, args.seed)
    for key, value in figures.items():
        print(f"{key}: {value:.3g}")
    print(f"seconds: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
