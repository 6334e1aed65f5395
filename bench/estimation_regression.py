"""Direct loss estimation against NannyML's DLE on the same chunks: accuracy and speed.

A regression model with heteroscedastic noise
(``tests.evaluators.test_estimation_regression.regression_frame``), a 20,000-row reference,
48 hourly windows of 1,000 events, a covariate shift from window 24 that raises the error.
Per window: modelwatch's estimated MAE and RMSE (loss models and bands learnt in the first
window, so their time is included), the realized figures, whether the realized MAE lies in
the sampling-error band, and NannyML's DLE on the same rows (``--nannyml-python``, skipped
when missing) through ``bench/nannyml_dle_side.py``.

    .venv/bin/python -m bench.estimation_regression [--nannyml-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import machine
from evaluators.base import EvalContext, get_metric
from evaluators.metrics.estimation_regression import realized_losses
from tests.evaluators.test_estimation_regression import SPEC, regression_frame

WINDOWS, SHIFT_AT, SIZE = 48, 24, 1_000
KEYS = ("mae", "rmse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nannyml-python", default="/var/tmp/nannyml-venv/bin/python")
    args = parser.parse_args()
    reference = regression_frame(20_000, 1)
    windows = [
        regression_frame(SIZE, 1_000 + i, shift=1.5 if i >= SHIFT_AT else 0.0)
        for i in range(WINDOWS)
    ]
    ours: dict[str, list[float]] = {k: [] for k in KEYS}
    inside: list[bool] = []
    started = time.perf_counter()
    for window in windows:
        ctx = EvalContext(SPEC, window.drop("label"), reference, min_samples=30)
        for key in KEYS:
            [result] = get_metric(f"estimated_{key}").compute(ctx)
            ours[key].append(float(result.value or 0.0))
            if key == "mae":
                real = realized_losses(window["prediction"].to_numpy(), window["label"].to_numpy())
                inside.append(result.ci_low <= real["mae"] <= result.ci_high)  # type: ignore[operator]
    our_s = time.perf_counter() - started
    realized = {
        k: [realized_losses(w["prediction"].to_numpy(), w["label"].to_numpy())[k] for w in windows]
        for k in KEYS
    }
    print(f"{machine()}; {WINDOWS} windows of {SIZE}, shift from window {SHIFT_AT}")
    for key in KEYS:
        mae = np.mean(np.abs(np.array(ours[key]) - realized[key]))
        print(f"modelwatch estimated_{key}: MAE vs realized {mae:.4f}")
    print(f"modelwatch: realized MAE inside the sampling-error band in {np.mean(inside):.1%}")
    print(f"modelwatch: {our_s:.2f} s for all windows, fit and bands included")
    if not os.path.exists(args.nannyml_python):
        return
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, ana_path = Path(tmp) / "r.parquet", Path(tmp) / "a.parquet"
        reference.write_parquet(ref_path)
        pl.concat(windows).write_parquet(ana_path)
        side = Path(__file__).with_name("nannyml_dle_side.py")
        out = subprocess.run(
            [args.nannyml_python, str(side), str(ref_path), str(ana_path), str(SIZE)],
            check=True,
            capture_output=True,
            text=True,
        )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    for key in KEYS:
        mae = np.mean(np.abs(np.array(theirs[key]) - realized[key]))
        print(f"NannyML {theirs['nannyml']} DLE {key}: MAE vs realized {mae:.4f}")
    total = theirs["fit_s"] + theirs["estimate_s"]
    print(
        f"NannyML: {total:.2f} s (fit {theirs['fit_s']:.2f}, estimate {theirs['estimate_s']:.2f})"
    )
    print(f"NannyML / modelwatch time: {total / our_s:.1f}x")


if __name__ == "__main__":
    main()
