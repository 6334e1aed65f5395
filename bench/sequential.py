"""Repeated looks at a champion/challenger comparison: the always-valid sequence vs a fresh
test per window.

Each run is 30 days of hourly windows of 1,000 paired (shadow) requests; the champion
is right with probability 0.80 and the challenger, independently per request, with
0.80 (equal) or 0.82 (+2 points). A run promotes at the first hour the test says the
challenger is better: the sequential test when its always-valid interval of the
accuracy difference (:mod:`modelwatch.sequential`) lies above 0; the per-window test
when that hour's own 95% paired Wald interval does. All runs are simulated at once.

    .venv/bin/python -m bench.sequential [--runs 1000] [--days 30] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import numpy.typing as npt

from modelwatch.sequential import paired

Ints = npt.NDArray[np.int64]
PER_HOUR, CHAMPION = 1_000, 0.80


def hourly_cells(runs: int, hours: int, gain: float, seed: int) -> tuple[Ints, Ints]:
    """Per run and hour: pairs the challenger got right and the champion wrong (``b``), and
    the reverse (``c``). The differences are +1, -1 or 0, so ``sum = b - c`` and
    ``sum_sq = b + c``."""
    p1, p2 = CHAMPION, CHAMPION + gain
    probs = [p1 * p2, (1 - p1) * p2, p1 * (1 - p2), (1 - p1) * (1 - p2)]
    cells = np.random.default_rng(seed).multinomial(PER_HOUR, probs, size=(runs, hours))
    return cells[..., 1].astype(np.int64), cells[..., 2].astype(np.int64)


def first_sequential(b: Ints, c: Ints, alpha: float = 0.05) -> Ints:
    """The first hour (1-based) the sequence's lower edge clears 0; 0 for never."""
    n = PER_HOUR * np.arange(1, b.shape[1] + 1)[None, :]
    seq = paired(n, np.cumsum(b - c, axis=1), np.cumsum(b + c, axis=1), alpha)
    return _first(seq.low > 0)


def first_window(b: Ints, c: Ints, z: float = 1.959963984540054) -> Ints:
    """The first hour whose own paired Wald interval lies above 0; 0 for never."""
    n = PER_HOUR
    mean = (b - c) / n
    var = ((b + c) - n * mean * mean) / (n - 1)
    return _first(mean - z * np.sqrt(var / n) > 0)


def _first(hits: npt.NDArray[np.bool_]) -> Ints:
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def simulate(runs: int, days: int, seed: int) -> dict[str, float]:
    hours = 24 * days
    b0, c0 = hourly_cells(runs, hours, 0.0, seed)
    b1, c1 = hourly_cells(runs, hours, 0.02, seed + 1)
    seq_null, win_null = first_sequential(b0, c0), first_window(b0, c0)
    seq_gain = first_sequential(b1, c1)
    decided = seq_gain[seq_gain > 0]
    return {
        "false_promotion_sequential": float(np.mean(seq_null > 0)),
        "false_promotion_window": float(np.mean(win_null > 0)),
        "power_sequential": float(np.mean(seq_gain > 0)),
        "median_hours_to_decision": float(np.median(decided)) if decided.size else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, value in simulate(args.runs, args.days, args.seed).items():
        print(f"{name}: {value:.4g}")


if __name__ == "__main__":
    main()
