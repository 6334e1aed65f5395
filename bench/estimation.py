"""Label-free estimation against NannyML's CBPE on the same chunks: accuracy and speed.

A calibrated binary model (``tests.evaluators.test_estimation.binary_frame``), a 60,000-row
reference, 48 hourly windows of 1,000 events, a covariate shift from window 24. Per window:
modelwatch's estimated ROC AUC and accuracy (fit included in the first window), the realized
figures (scikit-learn), and NannyML's CBPE on the same rows (``--nannyml-python``, skipped
when missing) through ``bench/nannyml_cbpe_side.py``.

    .venv/bin/python -m bench.estimation [--nannyml-python /var/tmp/nannyml-venv/bin/python]
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
from sklearn.metrics import accuracy_score, roc_auc_score

from bench.common import machine
from evaluators.base import EvalContext, get_metric
from tests.evaluators.test_estimation import BINARY, binary_frame

WINDOWS, SHIFT_AT, SIZE = 48, 24, 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nannyml-python", default="/var/tmp/nannyml-venv/bin/python")
    args = parser.parse_args()
    reference = binary_frame(60_000, 1)
    windows = [
        binary_frame(SIZE, 1_000 + i, spread=1.5 if i < SHIFT_AT else 0.6) for i in range(WINDOWS)
    ]
    ours: dict[str, list[float]] = {"roc_auc": [], "accuracy": []}
    started = time.perf_counter()
    for window in windows:
        ctx = EvalContext(BINARY, window, reference, min_samples=30)
        for key in ours:
            ours[key].append(float(get_metric(f"estimated_{key}").compute(ctx)[0].value or 0.0))
    our_s = time.perf_counter() - started
    y = [w["label"].cast(pl.Int64).to_numpy() for w in windows]
    realized = {
        "roc_auc": [
            roc_auc_score(t, w["score"].to_numpy()) for t, w in zip(y, windows, strict=True)
        ],
        "accuracy": [
            accuracy_score(t, w["prediction"].cast(pl.Int64).to_numpy())
            for t, w in zip(y, windows, strict=True)
        ],
    }
    print(f"{machine()}; {WINDOWS} windows of {SIZE}, shift from window {SHIFT_AT}")
    for key in ours:
        mae = np.mean(np.abs(np.array(ours[key]) - realized[key]))
        print(f"modelwatch estimated_{key}: MAE vs realized {mae:.4f}")
    print(f"modelwatch: {our_s:.2f} s for all windows, fit and bands included")
    if not os.path.exists(args.nannyml_python):
        return
    with tempfile.TemporaryDirectory() as tmp:

        def ints(f: pl.DataFrame) -> pl.DataFrame:
            return f.with_columns(pl.col("label", "prediction").cast(pl.Int64))

        ref_path, ana_path = Path(tmp) / "r.parquet", Path(tmp) / "a.parquet"
        ints(reference).write_parquet(ref_path)
        ints(pl.concat(windows)).write_parquet(ana_path)
        out = subprocess.run(
            [
                args.nannyml_python,
                str(Path(__file__).with_name("nannyml_cbpe_side.py")),
                str(ref_path),
                str(ana_path),
                str(SIZE),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ours:
        mae = np.mean(np.abs(np.array(theirs[key]) - realized[key]))
        print(f"NannyML {theirs['nannyml']} CBPE {key}: MAE vs realized {mae:.4f}")
    total = theirs["fit_s"] + theirs["estimate_s"]
    print(
        f"NannyML: {total:.2f} s (fit {theirs['fit_s']:.2f}, estimate {theirs['estimate_s']:.2f})"
    )
    print(f"NannyML / modelwatch time: {total / our_s:.1f}x")


if __name__ == "__main__":
    main()
