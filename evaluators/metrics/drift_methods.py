"""The drift methods: what each one computes, on which columns, and its drift rule; and
which method a column gets by default (:func:`tested_method`) or as evidently chooses
(:func:`default_method`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from evaluators import stattests as st

__all__ = [
    "ALIASES",
    "ALPHA",
    "CATEGORICAL",
    "EVIDENTLY",
    "METHODS",
    "NUMERIC",
    "Figures",
    "Method",
    "default_method",
    "tested_method",
]

NUMERIC, CATEGORICAL = "numeric", "categorical"
Figures = tuple[float, float | None, float | None]
"""A method's statistic, p-value (None for distances) and effect size (tests only)."""


@dataclass(frozen=True)
class Method:
    """A drift method: which column kinds it takes, its default threshold, its drift rule;
    a test also names its effect size and that effect's default floor."""

    name: str
    kinds: frozenset[str]
    threshold: float
    run: Callable[[st.ReferenceProfile, pl.Series, int | None], Figures]
    rule: Callable[[float, float | None, float], bool]
    effect: str | None = None
    min_effect: float = 0.0

    @property
    def tested(self) -> bool:
        return self.effect is not None


def _p_at_most(stat: float, p: float | None, threshold: float) -> bool:
    return p is not None and p <= threshold


def _p_below(stat: float, p: float | None, threshold: float) -> bool:
    return p is not None and p < threshold


def _at_least(stat: float, p: float | None, threshold: float) -> bool:
    return stat >= threshold


def _distance(test: Callable[..., st.TestResult], **kwargs: Any) -> Callable[..., Figures]:
    def run(r: st.ReferenceProfile, c: pl.Series, b: int | None) -> Figures:
        statistic, _ = test(r, c, **({"n_bins": b} if kwargs.get("binned") else {}))
        return statistic, None, None

    return run


def _z(r: st.ReferenceProfile, c: pl.Series, b: int | None) -> Figures:
    return (*st.z_test(r, c), st.total_variation(r, c))


ALPHA = 0.001  # family-wise; chi-square against a fixed reference runs hot in the far tail
BOTH = frozenset({NUMERIC, CATEGORICAL})
ONE_NUMERIC, ONE_CATEGORICAL = frozenset({NUMERIC}), frozenset({CATEGORICAL})
NORMED_W, TV = "normed wasserstein", "total variation"
METHODS: dict[str, Method] = {
    "ks": Method(
        "ks", ONE_NUMERIC, ALPHA, lambda r, c, b: st.ks_wasserstein(r, c), _p_at_most, NORMED_W, 0.1
    ),
    "chi2": Method(
        "chi2", ONE_CATEGORICAL, ALPHA, lambda r, c, b: st.chi_square_tv(r, c), _p_below, TV, 0.05
    ),
    "z": Method("z", ONE_CATEGORICAL, ALPHA, _z, _p_below, TV, 0.05),
    "psi": Method("psi", BOTH, 0.1, _distance(st.psi, binned=True), _at_least),
    "jensenshannon": Method(
        "jensenshannon", BOTH, 0.1, _distance(st.jensenshannon, binned=True), _at_least
    ),
    "wasserstein": Method("wasserstein", ONE_NUMERIC, 0.1, _distance(st.wasserstein), _at_least),
}
EVIDENTLY = "evidently"  # data_drift's ``method``: evidently's choice per column, distances too
ALIASES = {"chisquare": "chi2", "js": "jensenshannon", "kolmogorov_smirnov": "ks"}


def tested_method(profile: st.ReferenceProfile, current: pl.Series) -> str:
    """data_drift's default: a test with a p-value on every column, as evidently chooses
    for references of at most 1,000 values (KS for numeric columns with more than 5
    values, else chi-square, or z for two values), at every reference size."""
    if not profile.categorical and profile.n_unique > 5:
        return "ks"
    if profile.categorical and profile.n_unique > 2:
        return "chi2"
    n_values = st.n_unique_union(profile, current)
    if not profile.categorical and n_values > 5:
        return "ks"
    return "chi2" if n_values > 2 else "z"


def default_method(profile: st.ReferenceProfile, current: pl.Series) -> str:
    """evidently's default (``_get_default_stattest``): by reference size, kind and the number
    of distinct values in both samples together."""
    numeric = not profile.categorical
    if profile.n <= 1000:
        if numeric and profile.n_unique > 5:
            return "ks"
        n_values = st.n_unique_union(profile, current)
        if numeric and n_values > 5:
            return "ks"
        return "chi2" if n_values > 2 else "z"
    if not numeric:
        return "jensenshannon"
    if profile.n_unique > 5 or st.n_unique_union(profile, current) > 5:
        return "wasserstein"
    return "jensenshannon"
