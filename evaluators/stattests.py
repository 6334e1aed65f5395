"""Drift statistics on whole columns, equal to scipy's and evidently's.

Every test takes a reference and a current sample with nulls, NaN and inf already
dropped, and returns ``(statistic, p_value)``; distances return ``p_value=None``.
The reference may be a :class:`ReferenceProfile`, which keeps what the tests need
from a reference column (sorted values, standard deviation, value counts) so that
it is computed once and reused for every window.

Definitions follow ``evidently.legacy.calculations.stattests`` (evidently 0.7); in
brackets, the figure evidently reports as its drift score:

- ``ks``: ``scipy.stats.ks_2samp`` with method ``auto`` (exact up to 10,000 values a
  side, as scipy and evidently) or ``asymp`` [p-value];
- ``chi_square``: ``scipy.stats.chisquare`` of current counts against reference
  proportions scaled to the current size [p-value];
- ``z_test``: evidently's two-proportion z-test, smallest value against the rest [p-value];
- ``psi``: evidently's PSI over its ``get_binned_data`` shares [statistic];
- ``jensenshannon``: ``scipy.spatial.distance.jensenshannon`` over the same shares,
  zero shares kept [statistic];
- ``wasserstein``: ``scipy.stats.wasserstein_distance / max(std(reference), 0.001)``
  [statistic].

Effect sizes for the tests: ``ks_wasserstein`` returns KS (with Kolmogorov's limiting
p-value above 10,000 values a side or once the effective size ``en = m n / (m + n)``
reaches :data:`KS_LIMIT_MIN_EN`, see :func:`ks_wasserstein`) and the normed Wasserstein
distance from one merge; ``chi_square_tv`` chi-square and the total variation distance
(half the L1 distance between the value shares) from one count.

The hot paths avoid what makes the plain calls slow: the reference is sorted once;
KS and Wasserstein read both empirical CDFs from one linear merge of the two sorted
samples (the KS statistic is exact, its p-value as said above); reference histogram
counts are binary searches on the sorted reference; current histograms take numpy's
uniform-bin path; value counts are polars group-bys.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import stats
from scipy.spatial import distance

__all__ = [
    "DISCRETE_MAX_UNIQUE",
    "EXACT_KS_MAX_N",
    "KS_LIMIT_MIN_EN",
    "ReferenceProfile",
    "Sample",
    "TestResult",
    "aligned_counts",
    "binned_shares",
    "chi_square",
    "chi_square_tv",
    "jensenshannon",
    "ks",
    "ks_wasserstein",
    "n_unique_union",
    "psi",
    "sturges_edges",
    "total_variation",
    "wasserstein",
    "z_test",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
Sample: TypeAlias = npt.NDArray[Any] | pl.Series
TestResult: TypeAlias = tuple[float, float | None]

EXACT_KS_MAX_N = 10_000  # scipy's MAX_AUTO_N: ks_2samp(method="auto") is exact up to this size
KS_LIMIT_MIN_EN = 500  # from this effective size the drift check takes Kolmogorov's limit
DISCRETE_MAX_UNIQUE = 20  # evidently bins numeric columns with more distinct reference values
WASSERSTEIN_MIN_NORM = 0.001  # evidently's floor for std(reference)


def as_series(values: Sample) -> pl.Series:
    return values if isinstance(values, pl.Series) else pl.Series("value", values)


def as_floats(values: Sample) -> FloatArray:
    array = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
    return array.astype(np.float64, copy=False)


class ReferenceProfile:
    """One reference column as the tests need it, each part computed once on first use.

    Bin edges are not cached: evidently bins reference and current together, so the
    edges move with the window; the sorted reference makes its counts binary searches.
    """

    def __init__(self, values: Sample, *, categorical: bool | None = None) -> None:
        self.series = as_series(values)
        self.categorical = (
            not self.series.dtype.is_numeric() if categorical is None else categorical
        )
        self.integer = self.series.dtype.is_integer()
        self.n = self.series.len()

    @cached_property
    def sorted_values(self) -> FloatArray:
        return np.sort(as_floats(self.series))

    @cached_property
    def std(self) -> float:
        return float(np.std(self.series.to_numpy()))

    @cached_property
    def n_unique(self) -> int:
        if self.categorical:
            return self.series.n_unique()
        values = self.sorted_values
        return int(np.count_nonzero(values[1:] != values[:-1])) + min(values.size, 1)

    @cached_property
    def counts(self) -> pl.DataFrame:
        return _value_counts(self.series, "reference")


def profile_of(reference: ReferenceProfile | Sample) -> ReferenceProfile:
    return reference if isinstance(reference, ReferenceProfile) else ReferenceProfile(reference)


# --- numeric tests --------------------------------------------------------------------------


def ks(
    reference: ReferenceProfile | Sample,
    current: Sample,
    *,
    mode: Literal["auto", "asymp"] = "auto",
) -> TestResult:
    """Two-sided KS: equals ``scipy.stats.ks_2samp(reference, current, method=mode)``.

    ``auto`` (scipy's and evidently's default) is exact up to 10,000 values a side,
    which is cheap there, so it is left to scipy; above, the statistic is read from
    the merged CDFs and the p-value is scipy's asymptotic ``kstwo.sf(d, round(en))``.
    """
    profile = profile_of(reference)
    ref, cur = profile.sorted_values, as_floats(current)
    if mode == "auto" and max(ref.size, cur.size) <= EXACT_KS_MAX_N:
        result = stats.ks_2samp(ref, cur, method="auto")
        return float(result.statistic), float(result.pvalue)
    return _ks_from_merge(*_merge(ref, cur), ref.size, cur.size)


def ks_wasserstein(
    reference: ReferenceProfile | Sample,
    current: Sample,
    *,
    mode: Literal["auto", "asymp"] = "auto",
) -> tuple[float, float | None, float]:
    """:func:`ks` and :func:`wasserstein` together, ``(d, p_value, normed distance)``: both
    read the same merged CDFs, so the pair costs one merge.

    The p-value is scipy's exact one (as evidently's) only for small samples: above
    10,000 values a side, or from an effective size ``en`` of :data:`KS_LIMIT_MIN_EN`, it
    is Kolmogorov's limit ``kstwobign.sf(d * sqrt(en))`` (Smirnov 1948). scipy's exact
    path counts lattice paths in O(m n): 5 ms a column for a 1,000-event window against
    a 5,000-row reference, where the limit costs 0.4 ms with the Wasserstein distance.
    From ``en`` = 500 the limit is conservative: over 400 seeded windows of 1,000 against
    5,000 (means shifted by 0 to 0.3 sd) it was never below the exact p-value, larger by
    3.2 % at the median and 11.5 % at most (12.1 % in the test's seeds), and 1 of 800
    verdicts at alpha 0.05 and 0.002 differed; below it the excess grows (51 % at most
    for 100 against 5,000), so small windows keep the exact value, which is cheap there."""
    profile = profile_of(reference)
    ref, cur = profile.sorted_values, as_floats(current)
    en = ref.size * cur.size / max(ref.size + cur.size, 1)
    exact = max(ref.size, cur.size) <= EXACT_KS_MAX_N and en < KS_LIMIT_MIN_EN
    if mode == "auto" and exact:
        d, p_value = ks(profile, cur, mode=mode)
        return d, p_value, wasserstein(profile, cur)[0]
    merged, ref_cum = _merge(ref, cur)
    d, distance_ = _ks_w_from_merge(merged, ref_cum, ref.size, cur.size)
    return (
        d,
        _kolmogorov_p(d, ref.size, cur.size),
        distance_ / max(profile.std, WASSERSTEIN_MIN_NORM),
    )


def _ks_w_from_merge(
    merged: FloatArray, ref_cum: npt.NDArray[Any], n_ref: int, n_cur: int
) -> tuple[float, float]:
    """The KS statistic and the Wasserstein distance from one pass over ``F_ref - F_cur``:
    KS where the next merged value differs (the ends of tied runs), Wasserstein weighted
    by the gap to the next value; the same arithmetic as the two separate passes."""
    diff = ref_cum[:-1] / n_ref
    buffer = np.arange(1, merged.size, dtype=np.float64)
    buffer -= ref_cum[:-1]
    buffer /= n_cur
    diff -= buffer
    gaps = np.subtract(merged[1:], merged[:-1], out=buffer)
    ends = gaps > 0
    d_max = float(diff.max(where=ends, initial=0.0))
    d_min = float(np.clip(-diff.min(where=ends, initial=0.0), 0, 1))
    np.abs(diff, out=diff)
    diff *= gaps
    return (d_min if d_min > d_max else d_max), float(diff.sum())


def _kolmogorov_p(d: float, n_ref: int, n_cur: int) -> float:
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    return float(np.clip(stats.kstwobign.sf(d * np.sqrt(m * n / (m + n))), 0, 1))


def _ks_from_merge(
    merged: FloatArray, ref_cum: npt.NDArray[Any], n_ref: int, n_cur: int
) -> tuple[float, float]:
    """The exact statistic from the merged CDFs and scipy's asymptotic p-value. (The drift
    check takes Kolmogorov's limit ``kstwobign.sf(d * sqrt(en))`` instead, since scipy's
    ``kstwo.sf(d, en)`` costs O(en) wherever p is below about 0.1: 0.16 s at en = 10^5,
    1.7 s at 10^6. The limit is within 1% of it from en = 10^4 and slightly larger, so
    conservative, below: 5% at p = 1e-3 and 10% at p = 1e-8 for en = 1,000.)"""
    group_ends = np.append(np.flatnonzero(merged[1:] != merged[:-1]), merged.size - 1)
    ref_counts = ref_cum[group_ends]
    diffs = ref_counts / n_ref - (group_ends + 1 - ref_counts) / n_cur
    d_max = float(diffs.max())
    d_min = float(np.clip(-diffs.min(), 0, 1))
    d = d_min if d_min > d_max else d_max
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    en = m * n / (m + n)
    p_value = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p_value


def wasserstein(reference: ReferenceProfile | Sample, current: Sample) -> TestResult:
    """evidently's normed Wasserstein: ``wasserstein_distance(ref, cur) / max(std(ref), 0.001)``.

    A constant reference (std 0) is divided by evidently's floor 0.001, as evidently does.
    Same terms as scipy's ``_cdf_distance``: ``|F_ref - F_cur|`` times the gap to the next
    merged value, from buffers reused in place.
    """
    profile = profile_of(reference)
    ref, cur = profile.sorted_values, as_floats(current)
    distance_ = _wasserstein_from_merge(*_merge(ref, cur), ref.size, cur.size)
    return distance_ / max(profile.std, WASSERSTEIN_MIN_NORM), None


def _wasserstein_from_merge(
    merged: FloatArray, ref_cum: npt.NDArray[Any], n_ref: int, n_cur: int
) -> float:
    gaps = ref_cum[:-1] / n_ref
    buffer = np.arange(1, merged.size, dtype=np.float64)  # values up to each merged position
    buffer -= ref_cum[:-1]  # ... of which current values (integers: exact in float64)
    buffer /= n_cur
    gaps -= buffer
    np.abs(gaps, out=gaps)
    gaps *= np.subtract(merged[1:], merged[:-1], out=buffer)  # times the gap to the next value
    return float(gaps.sum())  # not a BLAS dot: its idle threads spin on the other core


def _merge(ref: FloatArray, current: FloatArray) -> tuple[FloatArray, npt.NDArray[Any]]:
    """Both samples sorted into one array, with the count of reference values up to each
    position (ties: reference values first, as a stable sort of reference + current)."""
    merged = np.empty(ref.size + current.size, dtype=np.float64)
    merged[: ref.size] = ref
    cur = merged[ref.size :]
    cur[:] = current
    cur.sort()
    is_ref = np.zeros(merged.size, dtype=bool)
    is_ref[np.searchsorted(cur, ref, side="left") + np.arange(ref.size)] = True
    merged.sort(kind="stable")  # two sorted runs: one linear merge
    counter = np.int32 if merged.size < 2**31 else np.int64  # int32 halves the memory traffic
    return merged, np.cumsum(is_ref, dtype=counter)


# --- tests on binned or counted values -----------------------------------------------------


def psi(
    reference: ReferenceProfile | Sample, current: Sample, *, n_bins: int | None = None
) -> TestResult:
    """evidently's PSI: ``sum((r - c) * ln(r / c))`` over ``get_binned_data`` shares, zero
    shares replaced as evidently does."""
    ref, cur = binned_shares(reference, current, n_bins=n_bins, fill_zeros=True)
    return float(np.sum((ref - cur) * np.log(ref / cur))), None


def jensenshannon(
    reference: ReferenceProfile | Sample, current: Sample, *, n_bins: int | None = None
) -> TestResult:
    """evidently's Jensen-Shannon distance: ``scipy.spatial.distance.jensenshannon`` (natural
    log) over ``get_binned_data`` shares, zero shares kept."""
    ref, cur = binned_shares(reference, current, n_bins=n_bins, fill_zeros=False)
    return float(distance.jensenshannon(ref, cur)), None


def chi_square(reference: ReferenceProfile | Sample, current: Sample) -> TestResult:
    """evidently's chi-square: ``scipy.stats.chisquare(f_obs=current counts, f_exp=reference
    counts * n_cur / n_ref)`` over the union of values.

    A value never seen in the reference has expected count 0: the statistic is inf and
    the p-value 0 (drift), exactly as in evidently.
    """
    profile = profile_of(reference)
    _, ref_counts, cur_counts = aligned_counts(profile, current)
    return _chi_square_counts(ref_counts, cur_counts, profile.n)


def _chi_square_counts(ref_counts: IntArray, cur_counts: IntArray, n_ref: int) -> TestResult:
    expected = ref_counts * (int(cur_counts.sum()) / n_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.chisquare(cur_counts, expected)
    return float(result.statistic), float(result.pvalue)


def chi_square_tv(
    reference: ReferenceProfile | Sample, current: Sample
) -> tuple[float, float | None, float]:
    """:func:`chi_square` and :func:`total_variation` from one count of the window."""
    profile = profile_of(reference)
    _, ref_counts, cur_counts = aligned_counts(profile, current)
    statistic, p_value = _chi_square_counts(ref_counts, cur_counts, profile.n)
    return statistic, p_value, _total_variation(ref_counts, cur_counts)


def total_variation(reference: ReferenceProfile | Sample, current: Sample) -> float:
    """Half the L1 distance between the two samples' value shares: the share of the
    traffic that would have to move between values to turn one into the other."""
    _, ref_counts, cur_counts = aligned_counts(reference, current)
    return _total_variation(ref_counts, cur_counts)


def _total_variation(ref_counts: IntArray, cur_counts: IntArray) -> float:
    ref_total, cur_total = int(ref_counts.sum()), int(cur_counts.sum())
    if not ref_total or not cur_total:
        return 0.0
    return 0.5 * float(np.abs(ref_counts / ref_total - cur_counts / cur_total).sum())


def z_test(reference: ReferenceProfile | Sample, current: Sample) -> TestResult:
    """evidently's two-proportion z-test: the share of values other than the smallest value
    of the union, two-sided normal p-value. Both samples one and the same value: z=0, p=1."""
    profile = profile_of(reference)
    keys, ref_counts, cur_counts = aligned_counts(profile, current)
    n1, n2 = profile.n, int(cur_counts.sum())
    if keys.len() == 1:
        return 0.0, 1.0
    p1 = float(n1 - int(ref_counts[0])) / n1
    p2 = float(n2 - int(cur_counts[0])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(z), float(2 * (1 - stats.norm.cdf(np.abs(z))))


def binned_shares(
    reference: ReferenceProfile | Sample,
    current: Sample,
    *,
    n_bins: int | None = None,
    fill_zeros: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """evidently's ``get_binned_data``: numeric columns with more than 20 distinct reference
    values are cut into Sturges bins over both samples (``n_bins`` equal-width bins when
    given); anything else is counted per value. Returns the two share arrays."""
    profile = profile_of(reference)
    if not profile.categorical and profile.n_unique > DISCRETE_MAX_UNIQUE:
        ref_counts, cur_counts = _histogram_counts(profile, current, n_bins)
    else:
        _, ref_counts, cur_counts = aligned_counts(profile, current)
    ref_shares = ref_counts / profile.n
    cur_shares = cur_counts / int(cur_counts.sum())
    if fill_zeros:
        _fill_zero_shares(ref_shares)
        _fill_zero_shares(cur_shares)
    return ref_shares, cur_shares


def _histogram_counts(
    profile: ReferenceProfile, current: Sample, n_bins: int | None
) -> tuple[IntArray, IntArray]:
    integer = profile.integer and _is_integer(current)
    ref, cur = profile.sorted_values, as_floats(current)
    low = min(ref[0], cur.min())
    high = max(ref[-1], cur.max())
    if n_bins is None:
        edges = sturges_edges(low, high, ref.size + cur.size, integer=integer)
    else:
        edges = np.linspace(low, high, n_bins + 1)
    cuts = np.searchsorted(ref, edges, side="left")
    cuts[-1] = ref.size  # the last bin includes its right edge, the overall maximum
    cur_counts, _ = np.histogram(cur, bins=edges.size - 1, range=(edges[0], edges[-1]))
    return np.diff(cuts), cur_counts.astype(np.int64)


def sturges_edges(low: float, high: float, size: int, *, integer: bool = False) -> FloatArray:
    """``np.histogram_bin_edges(combined, bins="sturges")`` from the combined sample's minimum,
    maximum and size alone (integer data: bins at least 1 wide, as numpy does)."""
    first, last = np.float64(low), np.float64(high)
    width = (last - first) / (np.log2(size) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    if integer and width < 1:
        width = np.float64(1)
    n_equal_bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, n_equal_bins + 1, endpoint=True, dtype=np.float64)


def _is_integer(values: Sample) -> bool:
    if isinstance(values, pl.Series):
        return values.dtype.is_integer()
    return np.asarray(values).dtype.kind in "iu"


def _fill_zero_shares(shares: FloatArray) -> None:
    """evidently's ``feel_zeroes``: zero shares become min(non-zero)/1e6, or 1e-4 when the
    smallest non-zero share is above 1e-4."""
    smallest = float(shares[shares != 0].min())
    np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)


def aligned_counts(
    reference: ReferenceProfile | Sample, current: Sample
) -> tuple[pl.Series, IntArray, IntArray]:
    """The union of values (sorted) with the reference and current count of each."""
    joined = (
        profile_of(reference)
        .counts.join(
            _value_counts(as_series(current), "current"), on="value", how="full", coalesce=True
        )
        .fill_null(0)
        .sort("value")
    )
    return (
        joined.get_column("value"),
        joined.get_column("reference").to_numpy().astype(np.int64),
        joined.get_column("current").to_numpy().astype(np.int64),
    )


def _value_counts(series: pl.Series, name: str) -> pl.DataFrame:
    if series.dtype.is_numeric():
        series = series.cast(pl.Float64)
    counts = series.rename("value").value_counts(name=name)
    if isinstance(counts.schema["value"], pl.Categorical | pl.Enum):
        counts = counts.with_columns(pl.col("value").cast(pl.String))
    return counts


def n_unique_union(reference: ReferenceProfile | Sample, current: Sample) -> int:
    """How many distinct values the two samples hold together (evidently's ``n_values``)."""
    keys, _, _ = aligned_counts(reference, current)
    return keys.len()
