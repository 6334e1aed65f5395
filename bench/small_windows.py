"""Small windows: the default checks of a binary model on 1,000-event hourly windows.

Runs the runner's own compute path (``Runner._compute``: every default check for
``Task.BINARY``, contexts built as in a real run, the champion's window and usage
for the comparisons) over ``--windows`` windows of a challenger version, with
frames shaped as ``modelwatch.store.frames`` returns them (labels joined for 80 %
of the rows, usage samples, a reference). The store is left out: the figure is the
checks' compute. Prints the median time per run and per metric over ``--repeat``
passes, and the load seen before measuring.

    .venv/bin/python -m bench.small_windows
    .venv/bin/python -m bench.small_windows --events 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl

from bench.common import (
    START_US,
    bench_spec,
    feature_frame,
    machine,
    markdown_table,
    open_store,
    sqlite_url,
    wait_quiet,
)
from evaluators import runner as runner_module
from evaluators.base import EvalContext, Metric, get_metric
from evaluators.checks import resolve_checks
from evaluators.runner import Runner, _Inputs
from modelwatch.domain import Alias
from modelwatch.monitors import CheckSpec, MonitorSpec
from modelwatch.results import MetricResult
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.runs import RunRecord

HOUR_US = 3_600_000_000
LABELLED = 0.8
USAGE_SAMPLES = 60


def window_frame(n: int, seed: int, start_us: int) -> pl.DataFrame:
    """A window as ``read_events(with_labels=True)`` and the runner's conforming give it."""
    rng = np.random.default_rng(seed + 10_000)
    base = feature_frame(n, seed)
    label = np.where(rng.random(n) < base["score"].to_numpy(), "1", "0")
    labelled = rng.random(n) < LABELLED
    stamps = start_us + np.sort(rng.integers(0, HOUR_US, n))
    joined = pl.Series(labelled)
    return base.drop("ts_us").with_columns(
        pl.Series("timestamp", stamps).cast(pl.Datetime("us", "UTC")),
        pl.when(joined).then(pl.Series(label)).alias("label"),
        pl.when(joined)
        .then(pl.Series(stamps + 60_000_000).cast(pl.Datetime("us", "UTC")))
        .alias("label_timestamp"),
    )


def reference_frame(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(99)
    base = feature_frame(n, seed=99)
    label = np.where(rng.random(n) < base["score"].to_numpy(), "1", "0")
    return base.drop("ts_us", "request_id").with_columns(pl.Series("label", label))


def usage_frame(seed: int, start_us: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed + 20_000)
    stamps = start_us + np.sort(rng.integers(0, HOUR_US, USAGE_SAMPLES))
    return pl.DataFrame(
        {
            "timestamp": pl.Series(stamps).cast(pl.Datetime("us", "UTC")),
            "latency_ms": rng.gamma(2.0, 20.0, USAGE_SAMPLES),
            "cpu_seconds": rng.gamma(2.0, 0.01, USAGE_SAMPLES),
            "memory_mb": rng.normal(512.0, 20.0, USAGE_SAMPLES),
            "gpu_seconds": np.zeros(USAGE_SAMPLES),
            "cost": rng.gamma(2.0, 0.001, USAGE_SAMPLES),
        }
    )


def build(url: str, events: int, windows: int, reference: int) -> tuple[Runner, list[_Inputs]]:
    """A store holding only the catalog (model, champion, challenger, monitor) and the
    runs' inputs in memory."""
    store = open_store(url)
    registry = Registry(store)
    model = registry.create_model(bench_spec("bench").model_copy(update={"scores": True}), "bench")
    registry.create_version(model, "v1", None, "bench")
    challenger = registry.create_version(model, "v2", None, "bench")
    registry.set_alias(model, Alias.CHAMPION, "v1", "bench")
    registry.set_alias(model, Alias.CHALLENGER, "v2", "bench")
    champion, challenger = (registry.get_version(model, v) for v in ("v1", "v2"))
    spec = MonitorSpec.model_validate({"name": "hourly", "model": model.name, "window": "1h"})
    monitor = MonitorStore(store, registry).create(spec, "bench")
    baseline = reference_frame(reference)
    inputs = []
    for i in range(windows):
        start = START_US + i * HOUR_US
        run = RunRecord(
            id=i + 1,
            monitor_id=monitor.id,
            version_id=challenger.id,
            window_start_us=start,
            window_end_us=start + HOUR_US,
            segment_key="",
            data_state="bench",
            status="running",
            current=True,
            attempts=1,
            claimed_by="bench",
            claimed_at=None,
            finished_at=None,
            duration_ms=None,
            n_events=events,
            n_labels=0,
            error=None,
        )
        champion_frames = [window_frame(events, 2 * i, start), usage_frame(2 * i, start)]
        inputs.append(
            _Inputs(
                run=run,
                monitor=monitor,
                model=model,
                version=challenger,
                window=window_frame(events, 2 * i + 1, start),
                baseline=baseline,
                usage=usage_frame(2 * i + 1, start),
                champion=champion,
                expected_volume=float(events),
                rejected_events=0,
                champion_frames=champion_frames,
            )
        )
    return Runner(store, registry, "bench"), inputs


def checks_of(inputs: _Inputs) -> list[CheckSpec]:
    """The checks the runner resolves for this run (the label-free estimates included)."""
    spec, base = inputs.model.spec, inputs.baseline
    targets = base is not None and "label" in base.columns and base["label"].is_not_null().any()
    return resolve_checks(inputs.monitor.spec, spec.task, spec.scores, bool(targets))


@contextmanager
def per_metric(times: dict[str, list[float]]) -> Iterator[None]:
    """Time every metric's compute inside the runner (its ``_safe_compute``)."""
    original = runner_module._safe_compute

    def timed(metric: Metric, ctx: EvalContext) -> list[MetricResult]:
        started = time.perf_counter()
        try:
            return original(metric, ctx)
        finally:
            times[metric.key].append(time.perf_counter() - started)

    runner_module._safe_compute = timed
    try:
        yield
    finally:
        runner_module._safe_compute = original


def measure(runner: Runner, inputs: list[_Inputs], repeat: int) -> dict[str, Any]:
    run_times: list[float] = []
    cpu_times: list[float] = []
    metric_times: dict[str, list[float]] = defaultdict(list)
    results = 0
    for _ in range(repeat):
        for item in inputs:
            started, cpu = time.perf_counter(), time.process_time()
            results = len(runner._compute(item, checks_of(item), item.window, None, ""))
            run_times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu)
    with per_metric(metric_times):
        for item in inputs:
            runner._compute(item, checks_of(item), item.window, None, "")
    return {"runs": run_times, "cpu": cpu_times, "metrics": metric_times, "results": results}


def family_table(metric_times: dict[str, list[float]]) -> str:
    by_family: dict[str, float] = defaultdict(float)
    rows = []
    for key, values in sorted(metric_times.items(), key=lambda kv: -statistics.median(kv[1])):
        median = statistics.median(values) * 1000
        by_family[get_metric(key).family.value] += median
        rows.append([key, get_metric(key).family.value, f"{median:.2f}"])
    families = [[f, f"{ms:.2f}"] for f, ms in sorted(by_family.items(), key=lambda kv: -kv[1])]
    return (
        markdown_table(["metric", "family", "median ms per run"], rows)
        + "\n\n"
        + markdown_table(["family", "sum of medians, ms per run"], families)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per window")
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--reference", type=int, default=5000, help="reference rows")
    parser.add_argument("--repeat", type=int, default=5, help="passes over all windows")
    args = parser.parse_args()
    with sqlite_url() as url:
        runner, inputs = build(url, args.events, args.windows, args.reference)
        for item in inputs[:2]:  # warm-up: imports, the reference's cached profiles
            runner._compute(item, checks_of(item), item.window, None, "")
        load = wait_quiet(max_wait=30.0)
        started = time.perf_counter()
        figures = measure(runner, inputs, args.repeat)
        wall = time.perf_counter() - started
    runs, cpu = figures["runs"], figures["cpu"]
    print(f"{machine()}; load before measuring {load:.0%}; {wall:.1f} s")
    print(
        f"{args.windows} windows x {args.repeat} passes, {args.events} events, "
        f"reference {args.reference} rows, {figures['results']} results per run\n"
    )
    quartiles = statistics.quantiles(runs, n=4)
    print(
        markdown_table(
            ["run of the default checks", "median ms", "p25 ms", "p75 ms", "min ms"],
            [
                [
                    "compute (store left out)",
                    f"{statistics.median(runs) * 1000:.1f}",
                    f"{quartiles[0] * 1000:.1f}",
                    f"{quartiles[2] * 1000:.1f}",
                    f"{min(runs) * 1000:.1f}",
                ],
                [
                    "CPU time of the process (all threads)",
                    f"{statistics.median(cpu) * 1000:.1f}",
                    f"{statistics.quantiles(cpu, n=4)[0] * 1000:.1f}",
                    f"{statistics.quantiles(cpu, n=4)[2] * 1000:.1f}",
                    f"{min(cpu) * 1000:.1f}",
                ],
            ],
        )
    )
    print()
    print(family_table(figures["metrics"]))


if __name__ == "__main__":
    main()
