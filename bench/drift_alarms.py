"""False alarms and power of the default drift check and the recommended drift policy.

A seeded world of 20 numeric features (normal, log-normal, exponential, Student t,
uniform, Poisson counts, in turn) and 5 categorical ones (4 to 12 values, skewed shares,
one value of ``cat_0`` at 10%), with a binary ``prediction`` and a ``score``: what a
default monitor of a binary model tests. The reference holds 20,000 rows; a window
1,000 events, drawn from the reference distribution unless a scenario shifts it.

* No drift, 30 days: 720 hourly windows. Per window: does any drift check of the
  defaults (every default key of the drift family, run through its metric class on the
  frames, as the runner does) put a column in ``breach``; how many times the README's
  recommended drift policy (``for: 2, within: 3`` on ``data_drift`` breaches per
  column) starts firing, through :mod:`alerts.conditions`; and evidently's
  DataDriftPreset defaults on the same windows: any drifted column, dataset drift.
* A real shift: windows 0-5 from the reference, then a 0.5 sd mean shift of ``num_0``
  (or ``cat_0``'s share from 10% to 20%): the window at which the policy fires.
* Per method, at its defaults: the per-column false-alarm rate on the null windows
  and the power on shifted ones.

evidently's verdicts are evidently's rules reproduced by modelwatch (``method:
evidently``, no correction, its thresholds), which agree with evidently's own numbers to
1e-14 (``bench/drift_vs_evidently.py``); ``--evidently-windows N`` runs evidently 0.7
itself on the first N null windows and checks the verdicts agree (a run of
DataDriftPreset takes seconds per window, too slow for 720 windows).

    .venv/bin/python -m bench.drift_alarms [--windows 720] [--evidently-windows 3] [--write]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from alerts.conditions import evaluate, persistence
from bench.common import CATEGORICAL, NUMERIC, bench_spec
from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric
from evaluators.checks import DEFAULT_CHECKS
from evaluators.metrics.drift_methods import METHODS
from modelwatch.domain import Task
from modelwatch.policies import MAX_WITHIN, PolicySpec

REFERENCE_ROWS = 20_000
WINDOW_ROWS = 1_000
HOUR_US = 3_600_000_000
SHIFT_START = 6
RECOMMENDED_POLICY: dict[str, Any] = {
    "name": "feature-drift",
    "for": 2,
    "within": 3,
    "severity": "warning",
    "condition": {"status": {"metric": "data_drift", "column": "*", "status": "breach"}},
}
EVIDENTLY_RULES: dict[str, Any] = {
    "method": "evidently",
    "correction": "none",
    "thresholds": {"ks": 0.05, "chi2": 0.05, "z": 0.05},
    "min_effect": 0,
}
CATEGORY_COUNTS = (10, 4, 6, 12, 8)
Generator = Callable[[np.random.Generator, int], np.ndarray]


# --- the world ------------------------------------------------------------------------------


def _numeric(i: int) -> Generator:
    shapes: list[Generator] = [
        lambda r, n: r.normal(0.0, 1.0, n),
        lambda r, n: r.lognormal(0.0, 0.6, n),
        lambda r, n: r.exponential(2.0, n),
        lambda r, n: r.standard_t(5, n),
        lambda r, n: r.uniform(-1.0, 1.0, n),
        lambda r, n: r.poisson(6.0, n).astype(np.float64),
    ]
    return shapes[i % len(shapes)]


def category_shares(j: int, *, first: float | None = None) -> np.ndarray:
    """``cat_j``'s shares: geometric, except cat_0 whose first value has 10% (or ``first``)."""
    k = CATEGORY_COUNTS[j]
    if j == 0:
        head = 0.1 if first is None else first
        return np.array([head, *np.full(k - 1, (1 - head) / (k - 1))])
    shares = 0.8 ** np.arange(k)
    return shares / shares.sum()


@dataclass(frozen=True)
class Shift:
    """A scenario's change of the distribution: ``num_0`` moved by ``sigmas`` of its
    standard deviation, ``cat_0``'s first value at share ``first``."""

    sigmas: float = 0.0
    first: float | None = None


def frame(rng: np.random.Generator, n: int, shift: Shift = Shift()) -> pl.DataFrame:
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        columns[name] = _numeric(i)(rng, n)
    columns[NUMERIC[0]] = columns[NUMERIC[0]] + shift.sigmas  # num_0 is N(0, 1)
    for j, name in enumerate(CATEGORICAL):
        shares = category_shares(j, first=shift.first if j == 0 else None)
        values = np.array([f"v{v:02d}" for v in range(len(shares))])
        columns[name] = values[rng.choice(len(shares), n, p=shares)]
    logit = 0.8 * columns[NUMERIC[0]] - 0.5 * columns[NUMERIC[3]]
    score = 1.0 / (1.0 + np.exp(-logit))
    columns["score"] = score
    columns["prediction"] = np.where(score > 0.5, "1", "0")
    return pl.DataFrame(columns)


def reference(seed: int = 0) -> pl.DataFrame:
    return frame(np.random.default_rng(seed), REFERENCE_ROWS)


def windows(
    count: int, seed: int = 1, shift: Shift = Shift(), start: int = 0
) -> Iterator[pl.DataFrame]:
    """``count`` windows; from window ``start`` on, shifted."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        yield frame(rng, WINDOW_ROWS, shift if i >= start else Shift())


# --- evaluating -----------------------------------------------------------------------------


def default_drift_keys() -> list[str]:
    """The drift-family keys a monitor without checks runs for a binary model."""
    return [k for k in DEFAULT_CHECKS[Task.BINARY] if get_metric(k).family is Family.DRIFT]


def run_checks(
    baseline: pl.DataFrame, window: pl.DataFrame, checks: Mapping[str, Mapping[str, Any]]
) -> list[MetricResult]:
    spec = bench_spec()
    out: list[MetricResult] = []
    for key, options in checks.items():
        out += get_metric(key).compute(EvalContext(spec, window, baseline, options=options))
    return out


def breached(results: Sequence[MetricResult], *, columns_only: bool = True) -> list[str]:
    return [
        f"{r.metric}:{r.column or r.label or ''}"
        for r in results
        if r.status is Status.BREACH and (r.column is not None or not columns_only)
    ]


def as_frame(per_window: Sequence[Sequence[MetricResult]]) -> pl.DataFrame:
    """Results as the policy engine reads them from the store (one version, no segments)."""
    rows = [
        {
            "run_id": i + 1,
            "monitor_id": 1,
            "version_id": 1,
            "window_start_us": i * HOUR_US,
            "metric": r.metric,
            "column_name": r.column or "",
            "label": r.label or "",
            "segment": "",
            "value": r.value,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "threshold": r.threshold,
            "status": r.status.value,
        }
        for i, results in enumerate(per_window)
        for r in results
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


def firings(per_window: Sequence[Sequence[MetricResult]], policy: Mapping[str, Any]) -> list[int]:
    """The windows at which a series of ``policy`` starts firing, as the engine would see
    them after each window (its condition and ``persistence``, over the last 48 windows)."""
    spec = PolicySpec.model_validate(policy)
    verdicts = evaluate(spec.condition, as_frame(per_window), None)
    by_series: dict[object, dict[int, bool]] = {}
    for v in verdicts:
        by_series.setdefault(v.series, {})[v.window_start_us // HOUR_US] = v.breach
    starts: list[int] = []
    for history in by_series.values():
        firing = False
        for t in range(len(per_window)):
            known = [history[w] for w in range(max(0, t - MAX_WITHIN + 1), t + 1) if w in history]
            now = persistence(known, spec.for_windows, spec.within).firing if known else firing
            if now and not firing:
                starts.append(t)
            firing = now
    return sorted(starts)


# --- evidently itself -----------------------------------------------------------------------


def evidently_verdict(baseline: pl.DataFrame, window: pl.DataFrame) -> tuple[set[str], bool]:
    """evidently 0.7 DataDriftPreset defaults: the drifted columns and its dataset drift."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        numeric, categorical = [*NUMERIC, "score"], [*CATEGORICAL, "prediction"]
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(window.to_pandas(), data_definition=definition),
            Dataset.from_pandas(baseline.to_pandas(), data_definition=definition),
        )
        result = snapshot.dict()
    drifted, share = set(), 0.0
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        status = getattr(test["status"], "value", test["status"])
        if params["type"].endswith("ValueDrift") and status == "FAIL":
            drifted.add(str(params["column"]))
    for metric in result["metrics"]:
        if metric["config"]["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    return drifted, share >= 0.5


# --- the scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class NullFigures:
    windows: int
    breach_windows: dict[str, int]  # by default drift key, and "any"
    alerts: list[int]  # windows at which the recommended policy starts firing
    evidently_column_windows: int  # windows with any column drifted under evidently's rules
    evidently_dataset_windows: int  # ... with dataset drift (share of columns >= 0.5)
    per_method: dict[str, float]  # per-column false-alarm rate at the method's defaults


METHOD_CHECKS = {"ks": {}, "chi2": {}, "z": {}, "wasserstein": {}, "jensenshannon": {}, "psi": {}}


def evidently_flags(results: Sequence[MetricResult]) -> tuple[bool, bool]:
    """Any column drifted and dataset drift, from results under :data:`EVIDENTLY_RULES`."""
    columns = [
        r for r in results if r.column is not None and r.status in (Status.OK, Status.BREACH)
    ]
    drifted = sum(r.status is Status.BREACH for r in columns)
    return drifted > 0, bool(columns) and drifted / len(columns) >= 0.5


def null_scenario(count: int, *, methods: bool = True, seed: int = 1) -> NullFigures:
    baseline = reference()
    keys = default_drift_keys()
    per_window: list[list[MetricResult]] = []
    breach_windows = dict.fromkeys([*keys, "any"], 0)
    evidently_any = evidently_dataset = 0
    method_breaches = dict.fromkeys(METHOD_CHECKS, 0)
    method_columns = dict.fromkeys(METHOD_CHECKS, 0)
    for window in windows(count, seed):
        results = run_checks(baseline, window, {k: {} for k in keys})
        per_window.append(results)
        hits = breached(results, columns_only=False)
        for key in keys:
            breach_windows[key] += any(h.startswith(key + ":") for h in hits)
        breach_windows["any"] += bool(hits)
        ev_any, ev_dataset = evidently_flags(
            run_checks(baseline, window, {"data_drift": EVIDENTLY_RULES})
        )
        evidently_any += ev_any
        evidently_dataset += ev_dataset
        if methods:
            for key, options in METHOD_CHECKS.items():
                per_column = [r for r in run_checks(baseline, window, {key: options}) if r.column]
                method_columns[key] += len(per_column)
                method_breaches[key] += sum(r.status is Status.BREACH for r in per_column)
    rates = {k: method_breaches[k] / method_columns[k] for k in METHOD_CHECKS if method_columns[k]}
    return NullFigures(
        count,
        breach_windows,
        firings(per_window, RECOMMENDED_POLICY),
        evidently_any,
        evidently_dataset,
        rates,
    )


@dataclass(frozen=True)
class ShiftFigures:
    name: str
    first_alert: int | None  # windows after the shift started (0: its first window)
    breach_share: float  # shifted windows with the shifted column in breach
    evidently_dataset: float  # shifted windows with evidently's dataset drift
    evidently_column: float  # shifted windows with the column drifted under evidently's rules


def shift_scenario(
    name: str, shift: Shift, column: str, count: int = 12, seed: int = 2
) -> ShiftFigures:
    baseline = reference()
    keys = default_drift_keys()
    per_window, hit, ev_dataset, ev_column = [], 0, 0, 0
    for i, window in enumerate(windows(count, seed, shift, SHIFT_START)):
        results = run_checks(baseline, window, {k: {} for k in keys})
        per_window.append(results)
        if i < SHIFT_START:
            continue
        hit += any(r.column == column and r.status is Status.BREACH for r in results)
        evidently = run_checks(baseline, window, {"data_drift": EVIDENTLY_RULES})
        ev_dataset += evidently_flags(evidently)[1]
        ev_column += any(r.column == column and r.status is Status.BREACH for r in evidently)
    after = [t - SHIFT_START for t in firings(per_window, RECOMMENDED_POLICY) if t >= SHIFT_START]
    shifted = count - SHIFT_START
    return ShiftFigures(
        name, min(after, default=None), hit / shifted, ev_dataset / shifted, ev_column / shifted
    )


def power(shift: Shift, count: int = 50, seed: int = 3) -> dict[str, float]:
    """Per method at its defaults: the share of shifted windows with the shifted column in
    breach (num_0 for numeric methods, cat_0 for categorical ones)."""
    baseline = reference()
    column = NUMERIC[0] if shift.sigmas else CATEGORICAL[0]
    hits = dict.fromkeys(METHOD_CHECKS, 0)
    for window in windows(count, seed, shift):
        for key, options in METHOD_CHECKS.items():
            results = run_checks(baseline, window, {key: options})
            hits[key] += any(r.column == column and r.status is Status.BREACH for r in results)
    applies = {
        k
        for k in METHOD_CHECKS
        if k not in (("chi2", "z") if shift.sigmas else ("ks", "wasserstein"))
    }
    return {k: hits[k] / count for k in METHOD_CHECKS if k in applies}


# --- report ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--evidently-windows", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    t0 = time.perf_counter()
    null = null_scenario(args.windows)
    shifts = [
        shift_scenario("num_0 mean +0.5 sd", Shift(sigmas=0.5), NUMERIC[0]),
        shift_scenario("cat_0 first value 10% → 20%", Shift(first=0.2), CATEGORICAL[0]),
    ]
    powers = {
        "num_0 +0.5 sd": power(Shift(sigmas=0.5)),
        "cat_0 10% → 20%": power(Shift(first=0.2)),
    }
    agreement = check_evidently(args.evidently_windows)
    seconds = time.perf_counter() - t0
    text = report(null, shifts, powers, agreement, seconds)
    print(text)
    if args.write:
        write_section(Path(__file__).with_name("RESULTS.md"), text)


def check_evidently(count: int) -> str:
    """evidently itself on the first ``count`` null windows against our reproduction."""
    if count <= 0:
        return "not run"
    baseline, same = reference(), 0
    for window in windows(count):
        theirs, _ = evidently_verdict(baseline, window)
        ours = run_checks(baseline, window, {"data_drift": EVIDENTLY_RULES})
        mine = {r.column for r in ours if r.column and r.status is Status.BREACH}
        same += mine == theirs
    return f"{same} of {count} windows with the same drifted columns"


SECTION = "## Drift false alarms and power"


def report(
    null: NullFigures,
    shifts: Sequence[ShiftFigures],
    powers: Mapping[str, Mapping[str, float]],
    agreement: str,
    seconds: float,
) -> str:
    lines = [
        SECTION,
        "",
        "`bench/drift_alarms.py` (seeded): 20 numeric + 5 categorical features, prediction",
        f"and score; reference {REFERENCE_ROWS:,} rows, windows of {WINDOW_ROWS:,} events.",
        "",
        "    .venv/bin/python -m bench.drift_alarms --write  # --windows 720 --evidently-windows 3",
        "",
        *_null_table(null),
        *_shift_table(shifts),
        *_power_table(powers),
        "evidently's verdicts are its rules reproduced (`method: evidently`, no correction,",
        f"its thresholds); evidently 0.7 itself on the first null windows: {agreement}.",
        f"Run time: {seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def _null_table(null: NullFigures) -> list[str]:
    n = null.windows

    def share(k: int) -> str:
        return f"{k} of {n} ({100 * k / n:.1f}%)"

    keys = [k for k in null.breach_windows if k != "any"]
    policy = f"{len(null.alerts)} (at windows {null.alerts})"
    return [
        f"No drift, {n} hourly windows:",
        "",
        "| verdict | windows |",
        "|---|---|",
        *(f"| default `{k}`: a column in breach | {share(null.breach_windows[k])} |" for k in keys),
        f"| any default drift check in breach | {share(null.breach_windows['any'])} |",
        f"| evidently's defaults: any column drifted | {share(null.evidently_column_windows)} |",
        f"| evidently's defaults: dataset drift | {share(null.evidently_dataset_windows)} |",
        f"| recommended policy (`for: 2, within: 3`): alerts | {policy} |",
        "",
        "Per-column false-alarm rate of each method at its defaults (same windows):",
        "",
        "| method | rule | false alarms per column |",
        "|---|---|---|",
        *(f"| `{k}` | {_rule(k)} | {100 * v:.2f}% |" for k, v in null.per_method.items()),
        "",
    ]


def _shift_table(shifts: Sequence[ShiftFigures]) -> list[str]:
    rows = []
    for s in shifts:
        fired = "never" if s.first_alert is None else f"window {s.first_alert + 1}"
        figures = (s.breach_share, s.evidently_column, s.evidently_dataset)
        rows.append(f"| {s.name} | {fired} | " + " | ".join(f"{100 * f:.0f}%" for f in figures))
    return [
        f"A real shift from window {SHIFT_START + 1} on (the policy's first firing counted",
        "from the shift's first window; shares of the shifted windows):",
        "",
        "| shift | policy fires at | column in breach | evidently: column | evidently: dataset |",
        "|---|---|---|---|---|",
        *(r + " |" for r in rows),
        "",
    ]


def _power_table(powers: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines = ["Power of each method at its defaults (50 shifted windows, the column in breach):", ""]
    for name, by_method in powers.items():
        lines += [
            f"| {name} | " + " | ".join(f"`{k}`" for k in by_method) + " |",
            "|---|" + "---|" * len(by_method),
            "| power | " + " | ".join(f"{100 * v:.0f}%" for v in by_method.values()) + " |",
            "",
        ]
    return lines


def _rule(key: str) -> str:
    method = METHODS[key]
    if method.effect is None:
        return f"distance ≥ {method.threshold:g} (threshold only)"
    return f"Holm p ≤ {method.threshold:g} and {method.effect} ≥ {method.min_effect:g}"


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it)."""
    current = path.read_text()
    start = current.find(SECTION)
    if start < 0:
        path.write_text(current.rstrip() + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(SECTION))
    rest = "" if end < 0 else current[end:]
    path.write_text(current[:start] + text.rstrip() + "\n" + rest)


if __name__ == "__main__":
    main()
