"""Multivariate drift of a 1M-row window against a 100k reference: modelwatch vs NannyML.

Seeded data of 20 numeric and 5 categorical features (``bench.common.feature_frame``). Two
windows: one from the reference distribution, one where num_0 and num_1, correlated +0.8 in
the reference, are correlated -0.8 (marginals unchanged). For each, in this process:

* ``reconstruction_error`` and ``domain_classifier`` (defaults: variance 0.65, max_rows
  10,000, 5 folds) timed cold (what is learnt from the reference is learnt in the call) and
  warm (a second call: only the window's work);
* NannyML's DataReconstructionDriftCalculator on the same parquet files, in NannyML's own
  virtualenv (``--nannyml-python``, default /tmp/nannyml-venv/bin/python, skipped when
  missing) through ``bench/nannyml_side.py``, with the window as one chunk: fit and
  calculate timed separately.

    .venv/bin/python -m bench.multivariate [--rows 1000000] [--ref-rows 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.common import (
    CATEGORICAL,
    NUMERIC,
    bench_spec,
    feature_frame,
    machine,
    markdown_table,
    wait_quiet,
)
from evaluators.base import EvalContext, get_metric

KEYS = ("reconstruction_error", "domain_classifier")
NANNYML_PYTHON = "/tmp/nannyml-venv/bin/python"


def make_frame(n: int, seed: int, rho: float) -> pl.DataFrame:
    """Features only; num_1 correlated ``rho`` with num_0, both N(0, 1)."""
    frame = feature_frame(n, seed).select(*NUMERIC, *CATEGORICAL)
    rng = np.random.default_rng(seed + 7)
    num_0 = frame.get_column("num_0").to_numpy()
    num_1 = rho * num_0 + np.sqrt(1 - rho**2) * rng.normal(size=n)
    return frame.with_columns(pl.Series("num_1", num_1))


def modelwatch_side(reference: pl.DataFrame, window: pl.DataFrame) -> list[list[object]]:
    rows: list[list[object]] = []
    spec = bench_spec()
    baseline = reference.clone()  # a fresh frame: nothing learnt from it yet
    for key in KEYS:
        metric = get_metric(key)
        times, results = [], []
        load = ""
        for _ in range(2):  # cold, then warm
            load += f"{wait_quiet(30):.0%} "
            started = time.perf_counter()
            results = metric.compute(EvalContext(spec, window, baseline, min_samples=30))
            times.append(time.perf_counter() - started)
        main = results[0]
        rows.append(
            [key, f"{times[0]:.2f}", f"{times[1]:.2f}", f"{main.value:.4f}", main.status, load]
        )
    return rows


def nannyml_side(
    python: str, reference: pl.DataFrame, window: pl.DataFrame, workdir: Path
) -> dict[str, Any] | None:
    if not os.path.exists(python):
        return None
    ref_path, win_path = workdir / "reference.parquet", workdir / "window.parquet"
    reference.write_parquet(ref_path)
    window.write_parquet(win_path)
    wait_quiet(30)
    out = subprocess.run(
        [
            python,
            str(Path(__file__).with_name("nannyml_side.py")),
            str(ref_path),
            str(win_path),
            "--columns",
            ",".join([*NUMERIC, *CATEGORICAL]),
            "--chunk-size",
            str(window.height),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ref-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nannyml-python", default=NANNYML_PYTHON)
    args = parser.parse_args()
    reference = make_frame(args.ref_rows, args.seed, 0.8)
    print(f"{machine()}; reference {args.ref_rows:,} rows, windows {args.rows:,} rows\n")
    table: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="mw-bench-mv-") as tmp:
        for label, rho in (("no drift", 0.8), ("correlation flipped", -0.8)):
            window = make_frame(args.rows, args.seed + 1, rho)
            ours = modelwatch_side(reference, window)
            table += [[label, *row] for row in ours]
            cold_s, warm_s = (sum(float(str(r[i])) for r in ours) for i in (1, 2))
            table.append([label, "both (modelwatch)", f"{cold_s:.2f}", f"{warm_s:.2f}"])
            theirs = nannyml_side(args.nannyml_python, reference, window, Path(tmp))
            if theirs is None:
                continue
            total = theirs["fit_s"] + theirs["calculate_s"]
            alert = theirs["values"][0] > theirs["upper"] or theirs["values"][0] < theirs["lower"]
            table.append(
                [
                    label,
                    f"NannyML {theirs['nannyml']} reconstruction (fit + calculate)",
                    f"{total:.2f}",
                    f"{theirs['calculate_s']:.2f}",
                    f"{theirs['values'][0]:.4f}",
                    "alert" if alert else "ok",
                ]
            )
            cold = total / float(str(ours[0][1]))
            warm = theirs["calculate_s"] / float(str(ours[0][2]))
            table.append(
                [label, "NannyML / modelwatch reconstruction", f"{cold:.1f}x", f"{warm:.1f}x"]
            )
    headers = ["window", "what", "cold s", "warm s", "value", "status", "load before"]
    print(markdown_table(headers, [row + [""] * (len(headers) - len(row)) for row in table]))


if __name__ == "__main__":
    main()
