"""Drift + data quality of a 1M-row window against a 100k reference: modelwatch vs evidently.

Seeded data of 20 numeric and 5 categorical features (about 1% nulls in three of
them; drift injected into num_0..num_2, cat_0 and cat_1) is written to parquet once.
Each side then runs in its own process, so that its peak RSS (VmHWM) is its own:

* evidently: ``Report([DataDriftPreset()])`` over the data read into pandas, with an
  explicit data definition (timed: ``Dataset.from_pandas`` and ``Report.run``);
* modelwatch: ``data_drift`` over polars frames with each column's method forced to
  the one evidently picked, plus the quality metrics ``missing_rate``, ``out_of_range``
  and ``unseen_categories`` when registered (timed: the metrics' ``compute``). A second
  run with ``method: evidently`` shows the warm (cached reference) time and whether
  modelwatch's rendering of evidently's choice matches evidently's (the default
  ``data_drift`` tests every column instead: ``bench/drift_alarms.py``).

Agreement is evidently's per-column drift score (the p-value for tests, the distance
otherwise) against ours.

    .venv/bin/python -m bench.drift_vs_evidently [--rows 1000000] [--ref-rows 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.common import CATEGORICAL, CATEGORIES, NUMERIC, bench_spec, machine, markdown_table

QUALITY_KEYS = ("missing_rate", "out_of_range", "unseen_categories")
EVIDENTLY_METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chi2",
    "Z-test p_value": "z",
    "PSI": "psi",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
}
RESULT_PREFIX = "RESULT "


# --- data -------------------------------------------------------------------------------------


def make_frame(n: int, seed: int, *, drifted: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        values = rng.normal(size=n)
        if drifted and i == 0:
            values += 0.05
        elif drifted and i == 1:
            values *= 1.1
        elif drifted and i == 2:
            values += 0.2
        columns[name] = values
    cats = np.array([*CATEGORIES, "new"])
    for j, name in enumerate(CATEGORICAL):
        weights = np.ones(len(cats))
        weights[-1] = 0.0
        if drifted and j == 0:
            weights[:3] = 2.0
        elif drifted and j == 1:
            weights[-1] = 0.3
        columns[name] = cats[rng.choice(len(cats), size=n, p=weights / weights.sum())]
    frame = pl.DataFrame(columns)
    nulls = pl.Series(rng.random(n) < 0.01)
    return frame.with_columns(
        pl.when(nulls).then(None).otherwise(pl.col(c)).alias(c)
        for c in (NUMERIC[5], NUMERIC[6], CATEGORICAL[4])
    )


def write_data(folder: Path, rows: int, ref_rows: int, seed: int) -> None:
    make_frame(ref_rows, seed, drifted=False).write_parquet(folder / "reference.parquet")
    make_frame(rows, seed + 1, drifted=True).write_parquet(folder / "current.parquet")


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


# --- the two sides, each in its own process ---------------------------------------------------


def run_evidently(folder: Path) -> dict[str, Any]:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    rss_loaded = rss_mb("VmRSS")
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    seconds = time.perf_counter() - t0
    scores, methods = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = EVIDENTLY_METHODS[config["method"]]
    return {
        "seconds": seconds,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": rss_mb("VmHWM"),
        "scores": scores,
        "methods": methods,
    }


def run_ours(folder: Path, methods: dict[str, str]) -> dict[str, Any]:
    from evaluators.base import EvalContext, MetricResult, get_metric, metric_keys

    reference = pl.read_parquet(folder / "reference.parquet")
    current = pl.read_parquet(folder / "current.parquet")
    rss_loaded = rss_mb("VmRSS")
    spec = bench_spec()
    quality = [k for k in QUALITY_KEYS if k in metric_keys()]

    def evaluate(options: dict[str, Any]) -> tuple[float, list[MetricResult]]:
        t0 = time.perf_counter()
        results = get_metric("data_drift").compute(
            EvalContext(spec, current, reference, options=options)
        )
        for key in quality:
            results += get_metric(key).compute(EvalContext(spec, current, reference))
        return time.perf_counter() - t0, results

    seconds, results = evaluate({"methods": methods})
    warm_seconds, auto = evaluate({"method": "evidently"})
    drift = [r for r in results if r.metric == "data_drift" and r.column is not None]
    auto_methods = {
        r.column: r.detail.split(";")[0] for r in auto if r.metric == "data_drift" and r.column
    }
    return {
        "seconds": seconds,
        "warm_seconds": warm_seconds,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": rss_mb("VmHWM"),
        "scores": {r.column: r.p_value if r.p_value is not None else r.value for r in drift},
        "methods": {r.column: r.detail.split(";")[0] for r in drift},
        "auto_methods": auto_methods,
        "quality": quality,
        "results": len(results),
    }


def side(name: str, folder: Path, methods: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one side in a fresh interpreter and return what it reported."""
    command = [sys.executable, "-m", "bench.drift_vs_evidently", "--side", name, "--data"]
    command += [str(folder), "--methods", json.dumps(methods or {})]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        raise SystemExit(f"{name} side failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return report


# --- the comparison ---------------------------------------------------------------------------


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    diffs = {c: abs(ours["scores"][c] - s) for c, s in theirs["scores"].items()}
    worst = max(diffs, key=lambda c: diffs[c])
    auto = ours["auto_methods"]
    return {
        "speedup": theirs["seconds"] / ours["seconds"],
        "memory_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        "max_abs_diff": diffs[worst],
        "worst_column": worst,
        "all_within_1e9": all(
            math.isclose(ours["scores"][c], s, rel_tol=1e-9, abs_tol=1e-9)
            for c, s in theirs["scores"].items()
        ),
        "same_methods": all(auto.get(c) == m for c, m in theirs["methods"].items()),
    }


def report(args: argparse.Namespace, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    summary = compare(ours, theirs)
    rows = [
        ["evidently DataDriftPreset", f"{theirs['seconds']:.2f}", "",
         f"{theirs['peak_rss_mb']:.0f}", f"{theirs['rss_loaded_mb']:.0f}"],
        ["modelwatch data_drift + quality", f"{ours['seconds']:.3f}",
         f"{ours['warm_seconds']:.3f}", f"{ours['peak_rss_mb']:.0f}",
         f"{ours['rss_loaded_mb']:.0f}"],
    ]  # fmt: skip
    table = markdown_table(["side", "wall s", "warm s", "peak RSS MB", "RSS after load MB"], rows)
    lines = [
        f"{args.rows:,} current rows vs {args.ref_rows:,} reference rows, seed {args.seed}; "
        f"{datetime.now(UTC):%Y-%m-%d}; {machine()}",
        "",
        table,
        "",
        f"- speed-up: {summary['speedup']:.0f}x; peak memory: "
        f"{100 * summary['memory_ratio']:.0f}% of evidently's",
        f"- per-column drift scores: max |diff| {summary['max_abs_diff']:.3g} "
        f"({summary['worst_column']}); all within 1e-9: {summary['all_within_1e9']}",
        f"- methods evidently chose: {sorted(set(theirs['methods'].values()))}; modelwatch's "
        f"own default choice identical on every column: {summary['same_methods']}",
        f"- load average at the end (the machine is shared): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- quality metrics included: {', '.join(ours['quality']) or 'none registered'}; "
        f"{ours['results']} results",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ref-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=["evidently", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--methods", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "evidently":
        print(RESULT_PREFIX + json.dumps(run_evidently(args.data)))
        return
    if args.side == "ours":
        print(RESULT_PREFIX + json.dumps(run_ours(args.data, json.loads(args.methods))))
        return
    with tempfile.TemporaryDirectory(prefix="mw_drift_") as tmp:
        folder = Path(tmp)
        write_data(folder, args.rows, args.ref_rows, args.seed)
        theirs = side("evidently", folder)
        ours = side("ours", folder, theirs["methods"])
    print(report(args, ours, theirs))


if __name__ == "__main__":
    main()
