"""Label-free estimation (CBPE): golden figures against numpy and scikit-learn, calibration,
what is missing, and a seeded simulation of covariate shift with hourly windows of 1,000."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from alerts.conditions import evaluate, persistence
from evaluators.base import EvalContext, get_metric
from evaluators.calibration import fit_calibration
from evaluators.metrics.estimation import estimated_figures
from modelwatch.domain import ModelSpec
from modelwatch.policies import Condition
from modelwatch.results import MetricResult, Status

BINARY = ModelSpec.model_validate(
    {"name": "b", "task": "binary", "scores": True, "features": [{"name": "x", "type": "numeric"}]}
)
THREE = ModelSpec.model_validate(
    {
        "name": "m",
        "task": "multiclass",
        "classes": ["a", "b", "c"],
        "scores": True,
        "features": [{"name": "x", "type": "numeric"}],
    }
)
KEYS = [
    "estimated_accuracy",
    "estimated_precision",
    "estimated_recall",
    "estimated_f1",
    "estimated_specificity",
    "estimated_roc_auc",
]


def binary_frame(n: int, seed: int, spread: float = 1.5, sharpen: float = 1.0) -> pl.DataFrame:
    """Labels drawn from sigmoid(2x), so the score sigmoid(2x) is calibrated (``sharpen`` > 1
    makes it over-confident); a smaller ``spread`` puts more rows near the boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, spread, n)
    truth = 1.0 / (1.0 + np.exp(-2.0 * x))
    score = 1.0 / (1.0 + np.exp(-2.0 * sharpen * x))
    label = (rng.random(n) < truth).astype(int)
    return pl.DataFrame(
        {
            "x": x,
            "score": score,
            "prediction": (score > 0.5).astype(int).astype(str),
            "label": label.astype(str),
        }
    )


def three_frame(n: int, seed: int, spread: float = 1.5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, spread, n)
    logits = np.column_stack([-2.0 * x, np.full(n, 0.8), 2.0 * x])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    label = (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
    classes = np.array(["a", "b", "c"])
    return pl.DataFrame(
        {
            "x": x,
            **{f"score_{c}": proba[:, i] for i, c in enumerate(classes)},
            "prediction": classes[proba.argmax(axis=1)],
            "label": classes[label],
        }
    )


def _ctx(spec: ModelSpec, window: pl.DataFrame, baseline: pl.DataFrame | None, **options: Any):
    memo: dict[Hashable, Any] = {}
    return EvalContext(
        spec=spec, window=window, baseline=baseline, options=options, min_samples=30, memo=memo
    )


def _all(ctx: EvalContext) -> dict[str, MetricResult]:
    return {k: get_metric(k).compute(ctx)[0] for k in KEYS}


REFERENCE = binary_frame(60_000, 1)


def _proba(frame: pl.DataFrame) -> np.ndarray:
    s = frame["score"].to_numpy()
    return np.column_stack([1.0 - s, s])


def test_the_expected_confusion_matrix_by_hand() -> None:
    rng = np.random.default_rng(2)
    p1 = rng.random(400)
    pred = (rng.random(400) < 0.5).astype(np.int64)
    tp, fp = p1[pred == 1].sum(), (1 - p1[pred == 1]).sum()
    fn, tn = p1[pred == 0].sum(), (1 - p1[pred == 0]).sum()
    got = estimated_figures(np.column_stack([1 - p1, p1]), pred, np.column_stack([1 - p1, p1]), 1)
    assert got["accuracy"] == pytest.approx((tp + tn) / 400, rel=1e-12)
    assert got["precision"] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert got["recall"] == pytest.approx(tp / (tp + fn), rel=1e-12)
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)
    assert got["specificity"] == pytest.approx(tn / (tn + fp), rel=1e-12)
    # ROC AUC: the probability-weighted Mann-Whitney statistic, ties (self-pairs too) halved.
    s = np.round(p1, 2)  # ties
    above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    direct = (p1[:, None] * (1 - p1)[None, :] * above).sum() / (p1.sum() * (1 - p1).sum())
    got = estimated_figures(np.column_stack([1 - p1, p1]), pred, np.column_stack([1 - s, s]), 1)
    assert got["roc_auc"] == pytest.approx(direct, rel=1e-12)


def test_with_labels_as_probabilities_the_figures_are_scikit_learns() -> None:
    frame = three_frame(3_000, 3)
    classes = ["a", "b", "c"]
    y = np.array([classes.index(v) for v in frame["label"]])
    pred = np.array([classes.index(v) for v in frame["prediction"]])
    scores = frame.select([f"score_{c}" for c in classes]).to_numpy()
    got = estimated_figures(np.eye(3)[y], pred, scores, None)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), rel=1e-12)
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        assert got[name] == pytest.approx(fn(y, pred, average="macro"), rel=1e-12)
    auc = skm.roc_auc_score(y, scores, multi_class="ovr", average="macro")
    assert got["roc_auc"] == pytest.approx(auc, rel=1e-12)
    specificity = np.mean([skm.recall_score(y != k, pred != k) for k in range(3)])
    assert got["specificity"] == pytest.approx(specificity, rel=1e-12)


def test_the_metric_is_the_estimate_from_the_calibrated_scores() -> None:
    window = binary_frame(1_000, 4)
    results = _all(_ctx(BINARY, window, REFERENCE))
    y = REFERENCE["label"].cast(pl.Int64).to_numpy()
    calibration = fit_calibration(_proba(REFERENCE), y, 1)
    p = calibration.apply(_proba(window), 1)
    pred = window["prediction"].cast(pl.Int64).to_numpy()
    expected = estimated_figures(p, pred, _proba(window), 1)
    for key, result in results.items():
        assert result.value == pytest.approx(expected[key.removeprefix("estimated_")], rel=1e-12)
        assert result.ci_low < result.value < result.ci_high
        assert result.band_low < result.value < result.band_high
        assert result.status is Status.OK and "realized" in result.detail


def test_over_confident_scores_are_calibrated_and_the_decision_is_reported() -> None:
    skewed = binary_frame(20_000, 5, sharpen=3.0)
    [result] = get_metric("estimated_accuracy").compute(
        _ctx(BINARY, binary_frame(1_000, 6, sharpen=3.0), skewed)
    )
    assert "calibration isotonic" in result.detail
    y = skewed["label"].cast(pl.Int64).to_numpy()
    calibration = fit_calibration(_proba(skewed), y, 1)
    assert calibration.used and calibration.ece_calibrated < calibration.ece_raw
    assert f"{calibration.ece_raw:.4f} as sent" in result.detail


def test_without_scores_or_baseline_labels_it_says_what_is_missing() -> None:
    window = binary_frame(500, 7)
    [no_scores] = get_metric("estimated_f1").compute(_ctx(BINARY, window.drop("score"), REFERENCE))
    assert no_scores.status is Status.NOT_APPLICABLE and "score missing" in no_scores.detail
    [no_labels] = get_metric("estimated_f1").compute(_ctx(BINARY, window, REFERENCE.drop("label")))
    assert no_labels.status is Status.NOT_APPLICABLE and "no labels" in no_labels.detail
    [none] = get_metric("estimated_f1").compute(_ctx(BINARY, window, None))
    assert none.status is Status.NO_BASELINE


def test_a_user_threshold_replaces_the_band() -> None:
    [result] = get_metric("estimated_accuracy").compute(
        _ctx(BINARY, binary_frame(1_000, 8), REFERENCE, threshold=0.99)
    )
    assert result.status is Status.BREACH and result.threshold == 0.99
    assert result.band_low is None and result.ci_low is not None


def _simulate(
    frame: Any, spec: ModelSpec, reference: pl.DataFrame, windows: int, shift_at: int
) -> list[dict[str, MetricResult]]:
    """Hourly windows of 1,000; from ``shift_at`` the features concentrate near the boundary
    (covariate shift: the relation between features and labels is unchanged)."""
    out = []
    for i in range(windows):
        window = frame(1_000, 1_000 + i, spread=1.5 if i < shift_at else 0.6)
        ctx = _ctx(spec, window, reference)
        out.append({k: get_metric(k).compute(ctx)[0] for k in KEYS})
    return out


def _realized(result: MetricResult) -> float:
    return float(result.detail.split("realized ")[1].split(",")[0])


def _coverage(runs: list[dict[str, MetricResult]], key: str) -> tuple[float, float]:
    inside = [r[key].ci_low <= _realized(r[key]) <= r[key].ci_high for r in runs]
    error = [abs(r[key].value - _realized(r[key])) for r in runs]
    return float(np.mean(inside)), float(np.mean(error))


def test_simulation_binary_estimates_track_the_realized_figures_and_alarm_first() -> None:
    runs = _simulate(binary_frame, BINARY, REFERENCE, 48, 24)
    for key in ("estimated_accuracy", "estimated_roc_auc"):
        covered, _ = _coverage(runs, key)
        assert covered >= 0.9, (key, covered)
    before = np.mean([_realized(r["estimated_accuracy"]) for r in runs[:24]])
    after = np.mean([_realized(r["estimated_accuracy"]) for r in runs[24:]])
    assert after < before - 0.05  # the shift lowers accuracy
    frame = pl.DataFrame(
        [
            (
                1,
                i,
                "estimated_accuracy",
                "",
                "",
                "",
                r.value,
                r.status.value,
                r.band_low,
                r.band_high,
            )
            for i, run in enumerate(runs)
            for r in [run["estimated_accuracy"]]
        ],
        schema=[
            "version_id",
            "window_start_us",
            "metric",
            "column_name",
            "label",
            "segment",
            "value",
            "status",
            "band_low",
            "band_high",
        ],
        orient="row",
    )
    condition = Condition.model_validate(
        {"outside_band": {"metric": "estimated_accuracy", "side": "below"}}
    )
    verdicts = evaluate(condition, frame, None)
    firing = [
        i for i in range(48) if persistence([v.breach for v in verdicts[: i + 1]], 2, None).firing
    ]
    assert firing and 24 <= firing[0] <= 25  # for: 2, within 2 windows of the shift


def test_simulation_three_classes() -> None:
    reference = three_frame(60_000, 9)
    runs = _simulate(three_frame, THREE, reference, 24, 12)
    for key in ("estimated_accuracy", "estimated_roc_auc"):
        covered, _ = _coverage(runs, key)
        assert covered >= 0.9, (key, covered)


def test_the_drawn_roc_auc_equals_the_trapezoid_for_every_draw() -> None:
    """The draws' ROC AUC by mid-ranks equals the trapezoidal area, ties included, and
    scikit-learn's figure, draw by draw."""
    from sklearn.metrics import roc_auc_score

    from evaluators.metrics.estimation import _auc, _drawn_auc

    rng = np.random.default_rng(7)
    order = np.round(rng.random(400), 2)  # many ties
    hits = rng.random((30, 400)) < np.linspace(0.1, 0.9, 400)
    hits[0] = False  # no positives: undefined
    drawn = _drawn_auc(order, hits)
    assert np.isnan(drawn[0])
    for row, area in zip(hits[1:], drawn[1:], strict=True):
        assert area == pytest.approx(_auc(order, row.astype(float)), abs=1e-12)
        assert area == pytest.approx(roc_auc_score(row, order), abs=1e-12)


def test_the_binary_draws_match_the_general_confusion_matrices() -> None:
    """The binary shortcut (two matrix-vector products) gives every drawn figure of the
    bincount over full confusion matrices."""
    from evaluators.metrics.estimation import _drawn_figures

    rng = np.random.default_rng(11)
    scores = rng.random(500)
    proba = np.column_stack([1.0 - scores, scores])
    pred = (scores > 0.4).astype(np.int64)
    labels = (rng.random((40, 500)) < scores).astype(np.int64)
    fast = _drawn_figures(labels, pred, proba, 1, 2)
    # The general path: the positive class's columns of the full matrices.
    general = _drawn_figures(labels, pred, proba, 1, 3)
    for name, values in fast.items():
        assert np.allclose(values, general[name], rtol=0, atol=1e-12, equal_nan=True), name
