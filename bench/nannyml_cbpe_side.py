"""NannyML's CBPE (binary ROC AUC and accuracy) on parquet files, in NannyML's own virtualenv.

Prints one JSON line: the per-chunk estimates and the seconds fit and estimate took.

    /var/tmp/nannyml-venv/bin/python bench/nannyml_cbpe_side.py REF.parquet ANALYSIS.parquet 1000
"""

from __future__ import annotations

import json
import sys
import time

import nannyml as nml
import pandas as pd


def main() -> None:
    reference, analysis = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
    started = time.perf_counter()
    cbpe = nml.CBPE(
        y_pred_proba="score",
        y_pred="prediction",
        y_true="label",
        problem_type="classification_binary",
        metrics=["roc_auc", "accuracy"],
        chunk_size=int(sys.argv[3]),
    )
    cbpe.fit(reference)
    fitted = time.perf_counter()
    data = cbpe.estimate(analysis.drop(columns=["label"])).filter(period="analysis").to_df()
    done = time.perf_counter()
    out = {
        "roc_auc": data[("roc_auc", "value")].tolist(),
        "accuracy": data[("accuracy", "value")].tolist(),
        "fit_s": fitted - started,
        "estimate_s": done - fitted,
        "nannyml": nml.__version__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
