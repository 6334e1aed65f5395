"""Realized performance figures are judged by a band learnt from the reference's chunks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from evaluators.base import EvalContext, get_metric
from evaluators.learnt import BAND_CHUNKS, RESAMPLED_CHUNKS, size_bucket
from modelwatch.domain import ModelSpec
from modelwatch.results import Status

BINARY = ModelSpec.model_validate(
    {"name": "b", "task": "binary", "scores": True, "features": [{"name": "x", "type": "numeric"}]}
)
REGRESSION = ModelSpec.model_validate(
    {"name": "r", "task": "regression", "features": [{"name": "x", "type": "numeric"}]}
)


def _binary(n: int, seed: int, flip: float = 0.0) -> pl.DataFrame:
    """A calibrated model: the label is drawn from the score; ``flip`` of the predictions wrong."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    score = 1.0 / (1.0 + np.exp(-2.0 * x))
    label = (rng.random(n) < score).astype(int)
    pred = (score > 0.5).astype(int)
    flipped = rng.random(n) < flip
    pred = np.where(flipped, 1 - pred, pred)
    return pl.DataFrame(
        {"x": x, "score": score, "prediction": pred.astype(str), "label": label.astype(str)}
    )


def _ctx(spec: ModelSpec, window: pl.DataFrame, baseline: pl.DataFrame, **options: object):
    return EvalContext(spec=spec, window=window, baseline=baseline, options=options, min_samples=30)


REFERENCE = _binary(60_000, 1)


def test_the_accuracy_band_is_the_chunks_mean_plus_minus_three_sd() -> None:
    window = _binary(1_000, 2)
    [result] = get_metric("accuracy").compute(_ctx(BINARY, window, REFERENCE))
    size = size_bucket(1_000)
    chunks = REFERENCE.height // size
    assert chunks >= BAND_CHUNKS
    y = REFERENCE["label"].to_numpy()[: chunks * size].reshape(chunks, size)
    p = REFERENCE["prediction"].to_numpy()[: chunks * size].reshape(chunks, size)
    figures = (y == p).mean(axis=1)
    half = 3 * figures.std(ddof=1) * math.sqrt(size / 1_000)
    assert result.band_low == pytest.approx(figures.mean() - half, rel=1e-12)
    assert result.band_high == pytest.approx(figures.mean() + half, rel=1e-12)
    assert result.status is Status.OK and result.band_low < result.value < result.band_high
    assert f"{chunks} reference chunks of {size}" in result.detail


def test_a_drop_in_accuracy_breaches_its_band_and_a_threshold_wins() -> None:
    worse = _binary(1_000, 3, flip=0.15)
    [result] = get_metric("accuracy").compute(_ctx(BINARY, worse, REFERENCE))
    assert result.status is Status.BREACH and result.value < result.band_low
    [judged] = get_metric("accuracy").compute(_ctx(BINARY, worse, REFERENCE, threshold=0.5))
    assert judged.status is Status.OK and judged.band_low is None and judged.threshold == 0.5


def test_headline_figures_only_and_roc_auc_too() -> None:
    window = _binary(1_000, 4)
    results = get_metric("precision").compute(_ctx(BINARY, window, REFERENCE))
    assert results[0].label is None and results[0].band_low is not None
    assert all(r.band_low is None for r in results[1:])  # per-class figures
    [auc] = get_metric("roc_auc").compute(_ctx(BINARY, window, REFERENCE))
    assert auc.band_low is not None and auc.band_low < auc.value < auc.band_high <= 1.0


def test_a_small_reference_is_resampled() -> None:
    small = REFERENCE.head(30_000)
    [result] = get_metric("accuracy").compute(_ctx(BINARY, _binary(1_000, 5), small))
    assert f"{RESAMPLED_CHUNKS} resamples of {size_bucket(1_000)}" in result.detail
    assert result.band_low is not None and result.band_low < result.value < result.band_high


def test_mae_band_on_a_regression_model() -> None:
    rng = np.random.default_rng(6)

    def frame(n: int, noise: float) -> pl.DataFrame:
        y = rng.normal(10, 2, n)
        return pl.DataFrame({"x": y, "prediction": y + rng.normal(0, noise, n), "label": y})

    reference = frame(60_000, 1.0)
    [ok] = get_metric("mae").compute(_ctx(REGRESSION, frame(1_000, 1.0), reference))
    [bad] = get_metric("mae").compute(_ctx(REGRESSION, frame(1_000, 1.5), reference))
    assert ok.status is Status.OK and bad.status is Status.BREACH
    assert bad.value > bad.band_high


def test_null_windows_rarely_breach_the_accuracy_band() -> None:
    """Seeded: 300 windows of 1,000 from the reference's distribution."""
    metric = get_metric("accuracy")
    breaches = sum(
        metric.compute(_ctx(BINARY, _binary(1_000, 100 + i), REFERENCE))[0].status is Status.BREACH
        for i in range(300)
    )
    assert breaches <= 4  # 3 sd either side: about 0.3% expected


def test_a_bad_sigmas_option_is_an_error() -> None:
    [result] = get_metric("accuracy").compute(_ctx(BINARY, _binary(100, 7), REFERENCE, sigmas=0))
    assert result.status is Status.ERROR and "sigmas" in result.detail
