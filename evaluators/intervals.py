"""Confidence intervals for accuracy and error metrics: analytic where a formula is honest,
a seeded, vectorised bootstrap where none is.

Everything works on whole numpy arrays; nothing loops over rows. Undefined bounds
(too few rows, zero trials) come back as NaN; :func:`bounds` turns them into None.

- :func:`wilson`: Wilson score interval of a proportion (no continuity correction).
- :func:`mean_interval`: normal approximation of a mean, ``mean ± z·s/√n``.
- :func:`rmse_interval`: delta method, ``se(√MSE) = se(MSE) / (2√MSE)``.
- :func:`quantile_interval`: distribution-free order-statistic interval from the binomial.
- :func:`delong`: ROC AUC with DeLong's (1988) variance from structural components,
  computed with one sort (midranks, ties count one half).
- :func:`bootstrap_interval`: percentile Poisson bootstrap (i.i.d. Poisson(1) row
  weights), drawn in blocks of at most :data:`MAX_BLOCK_ENTRIES` weights so memory
  stays bounded whatever the window size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_BLOCK_ENTRIES",
    "DeLong",
    "IntervalSettings",
    "bootstrap_interval",
    "bounds",
    "delong",
    "group_sums",
    "macro_auc_variance",
    "mean_interval",
    "normal_interval",
    "quantile_interval",
    "rmse_interval",
    "wilson",
    "z_score",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Statistic = Callable[[Floats], Floats]

MAX_BLOCK_ENTRIES = 2_000_000  # bootstrap weights held at once (16 MB of float64)


@dataclass(frozen=True)
class IntervalSettings:
    """The interval options a monitor may set: ``confidence``, ``bootstrap``, ``seed``."""

    confidence: float = 0.95
    resamples: int = 200
    seed: int = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> IntervalSettings:
        """Read and check the options; ValueError names the bad option and value."""
        confidence = options.get("confidence", 0.95)
        resamples = options.get("bootstrap", 200)
        seed = options.get("seed", 0)
        if not _is_number(confidence) or not 0.0 < confidence < 1.0:
            raise ValueError(f"option 'confidence' must be between 0 and 1, got {confidence!r}")
        if not _is_int(resamples) or not (resamples == 0 or resamples >= 10):
            raise ValueError(f"option 'bootstrap' must be 0 (off) or >= 10, got {resamples!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"option 'seed' must be a non-negative integer, got {seed!r}")
        return cls(float(confidence), int(resamples), int(seed))

    @property
    def z(self) -> float:
        return z_score(self.confidence)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@lru_cache(maxsize=64)
def z_score(confidence: float) -> float:
    """The two-sided normal quantile; equals ``scipy.stats.norm.ppf`` to 1e-14, without
    importing scipy.stats (a second of start-up) or recomputing it for every figure."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def bounds(low: npt.ArrayLike, high: npt.ArrayLike) -> dict[str, float | None]:
    """``ci_low``/``ci_high`` keyword arguments for a result (scalars); NaN becomes None."""
    lo, hi = float(np.asarray(low, dtype=np.float64)), float(np.asarray(high, dtype=np.float64))
    return {"ci_low": None if math.isnan(lo) else lo, "ci_high": None if math.isnan(hi) else hi}


def normal_interval(
    estimate: float, se: float, confidence: float, lo: float = -math.inf, hi: float = math.inf
) -> tuple[float, float]:
    """``estimate ± z·se`` clipped to ``[lo, hi]``; NaN bounds when ``se`` is undefined."""
    if not math.isfinite(se):
        return math.nan, math.nan
    half = z_score(confidence) * se
    return max(lo, estimate - half), min(hi, estimate + half)


def wilson(
    successes: npt.ArrayLike, trials: npt.ArrayLike, confidence: float
) -> tuple[Floats, Floats]:
    """Wilson score interval, elementwise; NaN where there are no trials."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z2 = z_score(confidence) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = math.sqrt(z2) / denom * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def mean_interval(
    values: Floats, confidence: float, lo: float = -math.inf, hi: float = math.inf
) -> tuple[float, float]:
    """Normal-approximation interval of the mean of ``values`` (sample sd, ddof 1)."""
    n = values.size
    if n < 2:
        return math.nan, math.nan
    se = float(np.std(values, ddof=1)) / math.sqrt(n)
    return normal_interval(float(np.mean(values)), se, confidence, lo, hi)


def rmse_interval(squared_errors: Floats, confidence: float) -> tuple[float, float]:
    """Delta-method interval of ``√mean(e²)``: ``se(RMSE) ≈ se(MSE) / (2·RMSE)``."""
    n = squared_errors.size
    if n < 2:
        return math.nan, math.nan
    mse = float(np.mean(squared_errors))
    if mse == 0.0:
        return 0.0, 0.0
    rmse = math.sqrt(mse)
    se = float(np.std(squared_errors, ddof=1)) / math.sqrt(n) / (2.0 * rmse)
    return normal_interval(rmse, se, confidence, lo=0.0)


def quantile_interval(
    sorted_values: Floats, quantiles: Floats, confidence: float
) -> tuple[Floats, Floats]:
    """Order-statistic interval ``[X(l), X(u)]`` for each quantile ``q``.

    ``l`` and ``u - 1`` are the ``alpha/2`` and ``1 - alpha/2`` quantiles of Binomial(n, q), so
    ``P(X(l) ≤ ξq ≤ X(u)) ≥ 1 - alpha`` for any continuous distribution (clipped to the sample).
    """
    n = sorted_values.size
    if n == 0:
        return np.full(quantiles.shape, np.nan), np.full(quantiles.shape, np.nan)
    from scipy import stats  # only here: importing scipy.stats costs a second of start-up

    alpha = 1.0 - confidence
    low_rank = stats.binom.ppf(alpha / 2.0, n, quantiles)
    high_rank = stats.binom.ppf(1.0 - alpha / 2.0, n, quantiles) + 1.0
    low_index = np.clip(low_rank, 1, n).astype(np.int64) - 1
    high_index = np.clip(high_rank, 1, n).astype(np.int64) - 1
    return sorted_values[low_index], sorted_values[high_index]


@dataclass(frozen=True)
class DeLong:
    """ROC AUC with DeLong's variance and each row's influence on the AUC.

    ``influence[i]`` is row i's term in the linearisation ``AUC - θ ≈ Σ influence``:
    ``(V10ᵢ - AUC)/m`` for a positive, ``(V01ᵢ - AUC)/n`` for a negative. Averaging the
    influences of several AUCs on the same rows gives the variance of their average,
    covariances included (:func:`macro_auc_variance`). Empty unless asked for.
    """

    auc: float
    variance: float
    influence: Floats


def delong(positive: Bools, scores: Floats, *, influence: bool = True) -> DeLong | None:
    """AUC of ``scores`` for ``positive`` vs the rest; None unless both kinds are present.

    One sort; the structural components are computed per tie group (midranks), and
    spread back to rows only for ``influence`` (an empty array when not asked for).
    """
    m = int(np.count_nonzero(positive))
    n = positive.size - m
    if m == 0 or n == 0:
        return None
    order = np.argsort(scores)
    ordered = scores[order]
    is_pos = positive[order]
    ends = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1]
    pos_upto = np.cumsum(is_pos)[ends]  # positives scored at or below each tie group
    neg_upto = ends + 1 - pos_upto
    pos_in, neg_in = np.diff(pos_upto, prepend=0), np.diff(neg_upto, prepend=0)
    v10 = (neg_upto - 0.5 * neg_in) / n  # a positive's share of negatives scored below it
    v01 = (m - pos_upto + 0.5 * pos_in) / m  # a negative's share of positives scored above
    auc = float(pos_in @ v10) / m
    variance = math.nan
    if m > 1 and n > 1:
        s10 = float(pos_in @ (v10 - auc) ** 2) / (m - 1)
        s01 = float(neg_in @ (v01 - auc) ** 2) / (n - 1)
        variance = s10 / m + s01 / n
    rows = np.empty(0)
    if influence:
        group = np.repeat(np.arange(ends.size), np.diff(ends, prepend=-1))
        rows = np.empty(ordered.size)
        rows[order] = np.where(is_pos, (v10[group] - auc) / m, (v01[group] - auc) / n)
    return DeLong(auc, variance, rows)


def macro_auc_variance(fits: list[DeLong]) -> float:
    """Variance of the mean of several AUCs on the same rows (one-vs-rest macro): the sum
    of squared mean influences, DeLong's estimate with covariances (divisors m, not m-1)."""
    mean_influence = np.mean(np.stack([f.influence for f in fits]), axis=0)
    return float(np.sum(mean_influence**2))


def group_sums(weights: Floats, codes: Ints, n_groups: int, values: Floats | None = None) -> Floats:
    """``out[b, g] = sum of weights[b, i] * values[i]`` over units i with ``codes[i] == g``."""
    b = weights.shape[0]
    flat = (codes[None, :] + n_groups * np.arange(b)[:, None]).ravel()
    w = weights if values is None else weights * values[None, :]
    sums = np.bincount(flat, weights=w.ravel(), minlength=b * n_groups)
    return np.asarray(sums, dtype=np.float64).reshape(b, n_groups)


def bootstrap_interval(
    statistic: Statistic, units: int | Ints, settings: IntervalSettings
) -> tuple[Floats, Floats]:
    """Percentile interval of ``statistic`` (one or several columns) by Poisson bootstrap.

    Each resample gives every row an independent Poisson(1) weight (Hanley & MacGibbon
    2006; Chamandy et al. 2012): asymptotically the multinomial bootstrap, but weights
    are i.i.d., so a statistic may lay rows out in any fixed order of its own (sorted
    by score, grouped by bin) without gathering weights, and rows that are
    interchangeable for the statistic can be pooled: ``units`` is either the number of
    rows or the row counts of pooled cells (a confusion table), whose weights are then
    Poisson(count). ``statistic`` maps weights ``(b, units)`` to ``(b,)`` or ``(b, k)``;
    NaN draws (an undefined statistic) are left out. ``resamples == 0`` gives NaN bounds.
    """
    if settings.resamples == 0:
        return _unbounded(statistic, units)
    rng = np.random.default_rng(settings.seed)
    width = units if isinstance(units, int) else units.size
    block = max(1, MAX_BLOCK_ENTRIES // max(width, 1))
    draws: list[Floats] = []
    for start in range(0, settings.resamples, block):
        size = min(block, settings.resamples - start)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = statistic(_weights(rng, size, units))
        draws.append(values.reshape(size, -1))
    alpha = 1.0 - settings.confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN bounds
        low, high = np.nanquantile(np.concatenate(draws), [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return low, high


def _unbounded(statistic: Statistic, units: int | Ints) -> tuple[Floats, Floats]:
    ones = np.ones((1, units)) if isinstance(units, int) else units[None, :].astype(np.float64)
    nan = np.full(statistic(ones).size, np.nan)
    return nan, nan.copy()


# Poisson(1) by inverse CDF at 2^16 evenly spaced midpoints: one 16-bit draw per weight,
# several times faster than rng.poisson; the cut tail (P < 2^-17) is immaterial. The CDF
# is summed here rather than taken from scipy.stats, whose import is slow.
_POISSON_1_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])
_POISSON_1 = np.searchsorted(_POISSON_1_CDF, (np.arange(2**16) + 0.5) / 2**16).astype(np.float64)


def _weights(rng: np.random.Generator, size: int, units: int | Ints) -> Floats:
    if isinstance(units, int):
        draws = rng.integers(0, 2**16, size=(size, units), dtype=np.uint16)
        return np.asarray(_POISSON_1[draws], dtype=np.float64)
    return rng.poisson(units, size=(size, units.size)).astype(np.float64)
