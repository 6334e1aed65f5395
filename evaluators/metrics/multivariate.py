"""Multivariate drift: one figure for all features of a window against the baseline, which
catches changes no single column shows (a correlation that flips, leaving every marginal as
it was).

``reconstruction_error`` is NannyML's data reconstruction with PCA
(https://nannyml.readthedocs.io/en/stable/how_it_works/multivariate_drift.html, the
DataReconstructionDriftCalculator): features imputed (numeric: mean; categorical: most
frequent), encoded and standardised as learnt on the baseline, a PCA keeping the components
that explain ``variance`` (default 0.65, NannyML's) of the baseline's variance; the value is
the window's mean Euclidean distance between its rows and their reconstruction. Categorical
features are one-hot encoded over their ``max_categories`` (default 20) most frequent values
plus one column for every other value, rare or unseen; NannyML frequency-encodes them,
which gives equally frequent values the same code (``encoding: frequency`` does that). The
band is the baseline's mean ± ``sigmas`` (default 3) standard deviations of the mean error
of window-sized chunks, as NannyML's, but of errors out of fold (PCAs fitted on the other
four fifths of the baseline): errors of the rows a PCA was fitted on are lower than those of
new rows from the same distribution, enough with many features to push every window above an
in-sample band. A baseline holding fewer than 20 window-sized chunks gives the spread as the
rows' standard deviation / sqrt(window size). The band is at least ± ``min_change`` (default
0.01) of the baseline's mean error: a large window's sampling error is tiny, the PCA's own fit
error is not (a PCA fitted on the whole baseline reconstructs new rows about 0.6 % better than
one fitted on four fifths of 5,000 rows), and a change that small is not drift. ``threshold``
(a number: upper bound; a pair: the band) replaces the band.

``domain_classifier`` (NannyML's domain classifier, with scikit-learn's
HistGradientBoostingClassifier instead of LightGBM): a classifier learns to tell baseline
rows from window rows, at most ``max_rows`` (default 10,000) of each, sampled with ``seed``;
the value is the ROC AUC of its out-of-fold probabilities over ``folds`` (default 5)
stratified folds (0.5: indistinguishable). Breach when the AUC reaches ``threshold``, by
default max(0.55, 0.5 + 6 s0) with s0 = sqrt((n1 + n2 + 1) / (12 n1 n2)) the AUC's standard
deviation when both samples come from one distribution (Mann-Whitney), so that small windows
do not alarm on chance. Beside it, one result per feature (label ``importance``): how much the
AUC drops when that feature is shuffled within the held-out rows (permutation importance on
at most 2,000 of them, one shuffle per feature, the fitted fold models reused: prediction
only, no refit), which names the features that give the window away, interactions included.

Both: every feature of the spec (``columns`` narrows them); text features, features missing
from a frame, numeric features holding strings and features with no value in the baseline
are left out and ``detail`` names them. No baseline → ``no_baseline``; fewer rows than
``min_samples`` in either frame → ``insufficient_data``; bad options → ``error``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from evaluators import learnt
from evaluators.base import (
    EvalContext,
    Family,
    Metric,
    MetricResult,
    Status,
    Unavailable,
    frame_column,
    register,
)
from modelwatch.domain import FeatureType

__all__ = ["DomainClassifier", "FeatureSet", "ReconstructionError", "feature_set"]

MIN_BASELINE_ROWS = 10
DEFAULT_WORKERS = min(os.cpu_count() or 1, 4)
IMPORTANCE_ROWS = 2_000
HGB_PARAMS: Mapping[str, Any] = {  # enough to separate shifted data, cheap when there is none
    "max_iter": 50,
    "max_leaf_nodes": 15,
    "learning_rate": 0.1,
    "early_stopping": True,
    "n_iter_no_change": 5,
}


@dataclass(frozen=True)
class FeatureSet:
    """Frame columns of the features used, with their result names, and what was left out."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    names: Mapping[str, str]
    left_out: tuple[str, ...]

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.numeric, self.categorical

    def note(self) -> str:
        return f"; left out: {', '.join(self.left_out)}" if self.left_out else ""


def feature_set(ctx: EvalContext, baseline: pl.DataFrame) -> FeatureSet:
    wanted = ctx.option("columns", None)
    numeric: list[str] = []
    categorical: list[str] = []
    names: dict[str, str] = {}
    left_out: list[str] = []
    for feature in ctx.spec.features:
        if wanted is not None and feature.name not in wanted:
            continue
        source = frame_column(ctx.window, feature.name, "feature") or feature.name
        reason = _unusable(feature.type, source, ctx.window, baseline)
        if reason:
            left_out.append(f"{feature.name} ({reason})")
            continue
        names[source] = feature.name
        (numeric if feature.type is FeatureType.NUMERIC else categorical).append(source)
    return FeatureSet(tuple(numeric), tuple(categorical), names, tuple(left_out))


def _unusable(kind: FeatureType, source: str, window: pl.DataFrame, base: pl.DataFrame) -> str:
    if kind is FeatureType.TEXT:
        return "text"
    if source not in window.columns or source not in base.columns:
        return "missing from a frame"
    numeric = kind is FeatureType.NUMERIC
    for frame in (window, base):
        dtype = frame.schema[source]
        if numeric and not (dtype.is_numeric() or dtype == pl.Null):
            return f"numeric column holds {dtype}"
    values = base.get_column(source).drop_nulls()
    if numeric and values.dtype.is_float():
        values = values.filter(values.is_finite())
    return "" if values.len() else "no value in the baseline"


class _Multivariate(Metric):
    family: ClassVar[Family] = Family.DRIFT

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        if ctx.baseline is None:
            return [self.status_only(Status.NO_BASELINE, ctx.window.height, "no baseline")]
        try:
            return self.evaluate(ctx, ctx.baseline)
        except Unavailable as skip:
            return [self.unavailable(skip)]
        except Exception as exc:  # malformed options or data: reported, never raised
            detail = f"{type(exc).__name__}: {exc}"
            return [self.status_only(Status.ERROR, ctx.window.height, detail)]

    def evaluate(self, ctx: EvalContext, baseline: pl.DataFrame) -> list[MetricResult]:
        raise NotImplementedError

    def usable(self, ctx: EvalContext, baseline: pl.DataFrame, minimum: int) -> FeatureSet:
        n = ctx.window.height
        if n < max(ctx.min_samples, minimum):
            raise Unavailable(Status.INSUFFICIENT_DATA, f"{n} rows in the window", n)
        if baseline.height < max(ctx.min_samples, MIN_BASELINE_ROWS):
            raise Unavailable(
                Status.INSUFFICIENT_DATA, f"{baseline.height} rows in the baseline", n
            )
        features = feature_set(ctx, baseline)
        if not features.numeric and not features.categorical:
            detail = "no numeric or categorical feature" + features.note()
            raise Unavailable(Status.NOT_APPLICABLE, detail, n)
        return features


def _seed(ctx: EvalContext) -> int:
    return int(ctx.option("seed", 0))


@register
class ReconstructionError(_Multivariate):
    key = "reconstruction_error"
    description = "Mean PCA reconstruction error of the window (NannyML's data reconstruction)"

    def evaluate(self, ctx: EvalContext, baseline: pl.DataFrame) -> list[MetricResult]:
        features = self.usable(ctx, baseline, 1)
        variance = float(ctx.option("variance", 0.65))
        if not 0.0 < variance < 1.0:
            raise Unavailable(Status.ERROR, f"variance must be in (0, 1), got {variance}")
        encoding = str(ctx.option("encoding", "onehot"))
        if encoding not in ("onehot", "frequency"):
            raise Unavailable(Status.ERROR, f"encoding must be onehot or frequency: {encoding!r}")
        options = (variance, encoding, int(ctx.option("max_categories", 20)), _seed(ctx))
        model = learnt.cached(
            baseline,
            ("reconstruction", features.key, options),
            lambda: _fit(baseline, features, options),
        )
        if model is None or model.n_components >= model.width:
            detail = "the PCA keeps every dimension: nothing to reconstruct" + features.note()
            raise Unavailable(Status.NOT_APPLICABLE, detail, ctx.window.height)
        value = float(model.errors(ctx.window).mean())
        low, high, how = self._band(ctx, baseline, model, features, options)
        breach = value < low or value > high * (1 + 1e-12)
        detail = (
            f"PCA: {model.n_components} of {model.width} components ({variance:g} of the "
            f"variance); band [{low:.4g}, {high:.4g}] from {how}" + features.note()
        )
        status = Status.BREACH if breach else Status.OK
        return [
            self.result(
                value,
                ctx.window.height,
                threshold=high,
                band_low=low,
                band_high=high,
                status=status,
                detail=detail,
            )
        ]

    def _band(
        self,
        ctx: EvalContext,
        baseline: pl.DataFrame,
        model: learnt.Reconstruction,
        features: FeatureSet,
        options: tuple[Any, ...],
    ) -> tuple[float, float, str]:
        threshold = ctx.option("threshold", None)
        if isinstance(threshold, (list, tuple)):
            return float(threshold[0]), float(threshold[1]), "the threshold option"
        if threshold is not None:
            return -math.inf, float(threshold), "the threshold option"
        sigmas = float(ctx.option("sigmas", 3.0))
        size = learnt.size_bucket(ctx.window.height)
        key = ("reconstruction band", features.key, options, size)
        centre, spread, how = learnt.cached(baseline, key, lambda: model.spread(size))
        spread *= math.sqrt(size / ctx.window.height)  # from the bucket's size to the window's
        half = max(sigmas * spread, float(ctx.option("min_change", 0.01)) * centre)
        return max(0.0, centre - half), centre + half, f"reference errors out of fold, {how}"


def _fit(
    baseline: pl.DataFrame, features: FeatureSet, options: tuple[Any, ...]
) -> learnt.Reconstruction | None:
    variance, encoding, max_categories, seed = options
    encoder, _ = learnt.fit_encoder(
        baseline, features.numeric, features.categorical, encoding, max_categories
    )
    if not encoder.parts:
        return None
    return learnt.fit_reconstruction(encoder, baseline, variance, seed)


@register
class DomainClassifier(_Multivariate):
    key = "domain_classifier"
    description = "ROC AUC of a classifier telling window rows from baseline rows (NannyML's)"

    def evaluate(self, ctx: EvalContext, baseline: pl.DataFrame) -> list[MetricResult]:
        folds = int(ctx.option("folds", 5))
        if folds < 2:
            raise Unavailable(Status.ERROR, f"folds must be at least 2, got {folds}")
        features = self.usable(ctx, baseline, 2 * folds)
        max_rows, seed = int(ctx.option("max_rows", 10_000)), _seed(ctx)
        reference = learnt.cached(
            baseline,
            ("domain", features.key, max_rows, seed),
            lambda: _domain_reference(baseline, features, max_rows, seed),
        )
        window = ctx.window
        if window.height > max_rows:
            window = window.sample(max_rows, seed=seed)
        x = np.vstack([reference.sample, reference.encoder.transform(window)])
        y = np.r_[np.zeros(reference.sample.shape[0]), np.ones(window.height)]
        workers = int(ctx.option("workers", DEFAULT_WORKERS))
        auc, drops = classify(x, y, reference.encoder.categorical_mask, folds, seed, workers)
        threshold = _auc_threshold(ctx, reference.sample.shape[0], window.height)
        columns = [*reference.encoder.numeric, *(c for c, _ in reference.encoder.categorical)]
        ranked = sorted(zip(columns, drops, strict=True), key=lambda cd: -cd[1])
        top = ", ".join(f"{features.names[c]} {d:+.3f}" for c, d in ranked[:3])
        detail = (
            f"{folds}-fold AUC of {window.height} window vs {reference.sample.shape[0]} baseline"
            f" rows; AUC drop when shuffled: {top}" + features.note()
        )
        status = Status.BREACH if auc >= threshold else Status.OK
        main = self.result(  # the band is [0, threshold]: an AUC below 0.5 is no drift
            auc,
            ctx.window.height,
            threshold=threshold,
            band_low=0.0,
            band_high=threshold,
            status=status,
            detail=detail,
        )
        return [main, *(self._importance(features.names[c], d, window.height) for c, d in ranked)]

    def _importance(self, name: str, drop: float, n: int) -> MetricResult:
        detail = "ROC AUC drop when this feature is shuffled in the held-out rows"
        return self.result(drop, n, column=name, label="importance", detail=detail)


@dataclass(frozen=True)
class DomainReference:
    encoder: learnt.DomainEncoder
    sample: np.ndarray


def _domain_reference(
    baseline: pl.DataFrame, features: FeatureSet, max_rows: int, seed: int
) -> DomainReference:
    encoder = learnt.fit_domain_encoder(baseline, features.numeric, features.categorical)
    rows = baseline.sample(max_rows, seed=seed) if baseline.height > max_rows else baseline
    return DomainReference(encoder, encoder.transform(rows))


def _auc_threshold(ctx: EvalContext, n_reference: int, n_window: int) -> float:
    threshold = ctx.option("threshold", None)
    if threshold is not None:
        return float(threshold)
    sigma0 = math.sqrt((n_reference + n_window + 1) / (12 * n_reference * n_window))
    return max(0.55, 0.5 + 6 * sigma0)


def classify(
    x: np.ndarray, y: np.ndarray, categorical: np.ndarray, folds: int, seed: int, workers: int
) -> tuple[float, np.ndarray]:
    """Out-of-fold ROC AUC of a HistGradientBoostingClassifier telling y = 1 from y = 0, and
    per column the AUC lost when that column is shuffled in (at most ``IMPORTANCE_ROWS``)
    held-out rows."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    per_fold = max(1, IMPORTANCE_ROWS // folds)
    jobs = [(x, y, categorical, train, test, seed, per_fold) for train, test in splits]
    if workers <= 1:
        outcomes = [_fold(*job) for job in jobs]
    else:
        with ThreadPoolExecutor(min(workers, folds), thread_name_prefix="mw-domain") as pool:
            outcomes = list(pool.map(lambda job: _fold(*job), jobs))
    oof = np.empty(y.size)
    for (_, test), (scores, _, _) in zip(splits, outcomes, strict=True):
        oof[test] = scores
    auc = float(roc_auc_score(y, oof))
    held_y = np.concatenate([held for _, held, _ in outcomes])
    if np.unique(held_y).size < 2:
        return auc, np.zeros(x.shape[1])
    held = np.vstack([shuffled for *_, shuffled in outcomes])
    base = float(roc_auc_score(held_y, held[:, -1]))
    drops = [base - float(roc_auc_score(held_y, held[:, j])) for j in range(x.shape[1])]
    return auc, np.array(drops)


def _fold(
    x: np.ndarray,
    y: np.ndarray,
    categorical: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    per_fold: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fold: held-out probabilities, the labels of the rows used for importance and their
    probabilities with each column shuffled (last column: none shuffled)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    # One OpenMP thread per fold (folds run on threads): OpenMP teams spin-wait, and on a
    # busy machine two of them made one fit 10-30 times slower.
    with threadpool_limits(1, user_api="openmp"):
        model = HistGradientBoostingClassifier(
            **HGB_PARAMS,
            categorical_features=categorical if categorical.any() else None,
            random_state=seed,
        ).fit(x[train], y[train])
        scores = model.predict_proba(x[test])[:, 1]
        rng = np.random.default_rng([seed, int(test[0])])
        rows = test[rng.permutation(test.size)[:per_fold]]
        shuffled = []
        for j in range(x.shape[1]):
            part = x[rows].copy()
            part[:, j] = part[rng.permutation(rows.size), j]
            shuffled.append(model.predict_proba(part)[:, 1])
        shuffled.append(scores[np.searchsorted(test, rows)])
    return scores, y[rows], np.column_stack(shuffled)
