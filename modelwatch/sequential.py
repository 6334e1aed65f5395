"""Always-valid intervals for a running mean difference, valid however often one looks.

The normal-mixture boundary of the mixture sequential probability ratio test
(Johari, Pekelis & Walsh 2017, "Always valid inference: bringing sequential
analysis to A/B testing", section 4: the mSPRT with a N(0, tau^2) mixture) and,
with the variance estimated from the data, the asymptotic confidence sequence of
Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas ("Time-uniform central limit theory
and asymptotic confidence sequences", 2021, Theorem 2.2). Both give, after ``t``
samples of per-sample standard deviation ``sigma``, the half-width

    sigma * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha))

with ``rho^2 = tau^2 / sigma^2``; ``rho`` is chosen so the sequence is tightest at
``planned_n`` samples (Waudby-Smith et al., eq. 8). Every figure is vectorised:
arrays of sample counts and sums in, arrays out (the simulation tests look at
every run and hour at once).

Inputs are sufficient statistics, so a history of windows is summed, not replayed:
paired samples (shadow: the same requests) give ``n``, ``sum`` and ``sum_sq`` of the
per-request differences; two samples (split traffic) give them per side, and the
difference of the means is tested with ``t = n1 + n2`` and ``sigma^2 = t * (s1^2/n1 +
s2^2/n2)`` (the estimate's variance scaled to one sample), so both forms share the
boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "PLANNED_N",
    "Sequence",
    "Stats",
    "add_stats",
    "from_stats",
    "half_width",
    "paired",
    "rho_squared",
    "two_sample",
]

Floats = npt.NDArray[np.float64]
ArrayLike = Floats | float
PLANNED_N = 10_000
"""Samples at which the sequence is tightest: about what a 2-point accuracy gain needs."""


@dataclass(frozen=True)
class Sequence:
    """The always-valid interval ``[low, high]`` of the mean difference after ``t`` samples,
    the estimate, its per-sample standard deviation and the always-valid p-value of
    ``difference == 0`` (``min(1, 1/Lambda_t)``, the mSPRT's likelihood ratio)."""

    estimate: Floats
    low: Floats
    high: Floats
    t: Floats
    sigma: Floats
    p_value: Floats


def rho_squared(alpha: float, planned_n: float = PLANNED_N) -> float:
    """The mixture's variance (in units of the per-sample variance) that minimises the
    boundary at ``planned_n`` samples (Waudby-Smith et al. 2021, eq. 8)."""
    a = -2.0 * math.log(alpha)
    return (a + math.log(a + 1.0)) / planned_n


def half_width(t: ArrayLike, sigma: ArrayLike, alpha: float, rho2: float) -> Floats:
    """The normal-mixture boundary's half-width after ``t`` samples; NaN where ``t`` < 2."""
    tt = np.asarray(t, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        grow = tt * rho2 + 1.0
        width = s * np.sqrt(2.0 * grow / (tt * tt * rho2) * np.log(np.sqrt(grow) / alpha))
    return np.asarray(np.where(tt >= 2, width, np.nan), dtype=np.float64)


def _log_lambda(estimate: Floats, t: Floats, sigma: Floats, rho2: float) -> Floats:
    """log of the mixture likelihood ratio against ``difference == 0`` (Johari et al., eq. 11
    with ``V = sigma^2`` and ``tau^2 = rho^2 sigma^2``)."""
    grow = t * rho2 + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(sigma > 0, (estimate / sigma) ** 2, 0.0)
    return np.asarray(-0.5 * np.log(grow) + t * t * rho2 * z2 / (2.0 * grow), dtype=np.float64)


def _sequence(
    estimate: Floats, t: Floats, sigma: Floats, alpha: float, planned_n: float
) -> Sequence:
    rho2 = rho_squared(alpha, planned_n)
    half = half_width(t, sigma, alpha, rho2)
    p = np.minimum(1.0, np.exp(-_log_lambda(estimate, t, sigma, rho2)))
    p = np.where(t >= 2, p, np.nan)
    return Sequence(estimate, estimate - half, estimate + half, t, sigma, p)


def _moments(n: ArrayLike, total: ArrayLike, total_sq: ArrayLike) -> tuple[Floats, Floats, Floats]:
    """Counts, means and unbiased variances from sums (NaN below two samples)."""
    nn = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.asarray(total, dtype=np.float64) / nn
        var = (np.asarray(total_sq, dtype=np.float64) - nn * mean * mean) / (nn - 1.0)
    return nn, mean, np.where(nn >= 2, np.maximum(var, 0.0), np.nan)


def paired(
    n: ArrayLike,
    total: ArrayLike,
    total_sq: ArrayLike,
    alpha: float = 0.05,
    planned_n: float = PLANNED_N,
) -> Sequence:
    """The sequence for the mean of paired differences from their ``n``, sum and sum of
    squares (every argument may be an array of looks or runs)."""
    nn, mean, var = _moments(n, total, total_sq)
    return _sequence(mean, nn, np.sqrt(var), alpha, planned_n)


def two_sample(
    first: tuple[ArrayLike, ArrayLike, ArrayLike],
    second: tuple[ArrayLike, ArrayLike, ArrayLike],
    alpha: float = 0.05,
    planned_n: float = PLANNED_N,
) -> Sequence:
    """The sequence for ``mean(second) - mean(first)`` of independent samples, each side
    given as ``(n, sum, sum_sq)``."""
    n1, m1, v1 = _moments(*first)
    n2, m2, v2 = _moments(*second)
    t = n1 + n2
    sigma = np.sqrt(t * (v1 / n1 + v2 / n2))
    return _sequence(m2 - m1, t, sigma, alpha, planned_n)


Stats = dict[str, list[float]]
"""Summed statistics as stored with a result: ``{"pairs": [n, sum, sum_sq]}`` for paired
differences, ``{"champion": [...], "challenger": [...]}`` for two samples (the tested
difference is challenger - champion)."""
_SIDES = {"pairs": ("pairs",), "split": ("champion", "challenger")}


def add_stats(first: Stats, second: Stats) -> Stats:
    """The element-wise sum of two statistics of the same form."""
    if set(first) != set(second):
        raise ValueError(f"cannot add statistics of sides {sorted(first)} and {sorted(second)}")
    return {k: [a + b for a, b in zip(first[k], second[k], strict=True)] for k in first}


def from_stats(stats: Stats, alpha: float = 0.05, planned_n: float = PLANNED_N) -> Sequence:
    """The sequence of stored statistics (:data:`Stats`); ValueError if they are malformed."""
    for sides in _SIDES.values():
        if set(stats) == set(sides) and all(len(stats[s]) == 3 for s in sides):
            if sides == ("pairs",):
                n, total, total_sq = stats["pairs"]
                return paired(n, total, total_sq, alpha, planned_n)
            first, second = stats["champion"], stats["challenger"]
            return two_sample(
                (first[0], first[1], first[2]), (second[0], second[1], second[2]), alpha, planned_n
            )
    raise ValueError(f"statistics need 'pairs' or 'champion' and 'challenger' triples: {stats!r}")
