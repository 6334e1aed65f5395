"""NannyML's DLE (MAE and RMSE of a regression model) on parquet files, in NannyML's own
virtualenv.

Prints one JSON line: the per-chunk estimates and the seconds fit and estimate took.

    /var/tmp/nannyml-venv/bin/python bench/nannyml_dle_side.py REF.parquet ANALYSIS.parquet 1000
"""

from __future__ import annotations

import json
import sys
import time

import nannyml as nml
import pandas as pd


def main() -> None:
    reference, analysis = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
    features = [c for c in reference.columns if c not in ("prediction", "label")]
    started = time.perf_counter()
    dle = nml.DLE(
        feature_column_names=features,
        y_pred="prediction",
        y_true="label",
        metrics=["mae", "rmse"],
        chunk_size=int(sys.argv[3]),
    )
    dle.fit(reference)
    fitted = time.perf_counter()
    data = dle.estimate(analysis.drop(columns=["label"])).filter(period="analysis").to_df()
    done = time.perf_counter()
    out = {
        "mae": data[("mae", "value")].tolist(),
        "rmse": data[("rmse", "value")].tolist(),
        "fit_s": fitted - started,
        "estimate_s": done - fitted,
        "nannyml": nml.__version__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
