"""NannyML's DataReconstructionDriftCalculator on parquet files, run in NannyML's own virtualenv.

Not imported by modelwatch: NannyML's pins conflict with ours, so this script runs under
another interpreter (``python3 -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip
install nannyml``). It prints one JSON line: per analysis chunk the reconstruction error,
NannyML's band and the seconds that fit and calculate took.

    /tmp/nannyml-venv/bin/python bench/nannyml_side.py REFERENCE.parquet ANALYSIS.parquet \\
        --columns a,b,c --chunk-size 1000 [--n-components 0.65]
"""

from __future__ import annotations

import argparse
import json
import time

import nannyml as nml
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("analysis")
    parser.add_argument("--columns", required=True)
    parser.add_argument("--chunk-size", type=int, required=True)
    parser.add_argument("--n-components", type=float, default=0.65)
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    analysis = pd.read_parquet(args.analysis)
    started = time.perf_counter()
    calc = nml.DataReconstructionDriftCalculator(
        column_names=args.columns.split(","),
        chunk_size=args.chunk_size,
        n_components=args.n_components,
    )
    calc.fit(reference)
    fitted = time.perf_counter()
    data = calc.calculate(analysis).filter(period="analysis").to_df()
    done = time.perf_counter()
    error = data["reconstruction_error"]
    out = {
        "values": error["value"].tolist(),
        "lower": float(error["lower_threshold"].iloc[0]),
        "upper": float(error["upper_threshold"].iloc[0]),
        "fit_s": fitted - started,
        "calculate_s": done - fitted,
        "nannyml": nml.__version__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
