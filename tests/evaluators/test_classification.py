"""Classification metrics pinned to scikit-learn on seeded data, and every bad-data case."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from evaluators.base import EvalContext, Family, MetricResult, Status, get_metric, metric_keys
from evaluators.intervals import wilson
from modelwatch.domain import ModelSpec

FEATURES = [{"name": "x", "type": "numeric"}]
BINARY = ModelSpec.model_validate(
    {"name": "b", "task": "binary", "features": FEATURES, "classes": ["ham", "spam"]}
)
CLASSES = ["a", "b", "c", "d"]
MULTI = ModelSpec.model_validate(
    {"name": "m", "task": "multiclass", "features": FEATURES, "classes": CLASSES}
)
REGRESSION = ModelSpec.model_validate({"name": "r", "task": "regression", "features": FEATURES})
KEYS = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "calibration_error",
    "confusion_matrix",
]
SCORE_KEYS = ["roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"]
TOL = 1e-9


def binary_frame(n: int = 2_000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    spam = rng.random(n) < 0.35
    score = np.clip(rng.normal(0.35 + 0.3 * spam, 0.2), 0.0, 1.0).round(2)  # ties
    flip = rng.random(n) < 0.05
    prediction = np.where((score > 0.5) ^ flip, "spam", "ham")
    label = np.where(spam, "spam", "ham")
    return pl.DataFrame({"label": label, "prediction": prediction, "score": score})


def multi_frame(n: int = 3_000, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    proba = rng.dirichlet(np.ones(4), n) + 0.8 * np.eye(4)[y] * rng.random((n, 1))
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.where(rng.random(n) < 0.9, proba.argmax(axis=1), rng.integers(0, 4, n))
    names = np.array(CLASSES)
    scores = {f"score_{c}": proba[:, i] for i, c in enumerate(CLASSES)}
    return pl.DataFrame({"label": names[y], "prediction": names[pred], **scores})


def run(key: str, spec: ModelSpec, frame: pl.DataFrame, **kw: Any) -> list[MetricResult]:
    return get_metric(key).compute(EvalContext(spec=spec, window=frame, **kw))


def one(key: str, spec: ModelSpec, frame: pl.DataFrame, **kw: Any) -> MetricResult:
    return run(key, spec, frame, **kw)[0]


def labelled(results: list[MetricResult]) -> dict[str | None, MetricResult]:
    return {r.label: r for r in results}


def _proba(frame: pl.DataFrame) -> np.ndarray:
    return frame.select([f"score_{c}" for c in CLASSES]).to_numpy()


def _ok_interval(r: MetricResult) -> None:
    assert r.status is Status.OK, r
    assert r.value is not None and r.ci_low is not None and r.ci_high is not None, r
    assert r.ci_low <= r.value <= r.ci_high, r


# --- pinned to sklearn ----------------------------------------------------------------


def test_every_key_is_registered_as_classification() -> None:
    assert set(KEYS) <= set(metric_keys(Family.CLASSIFICATION))


@pytest.mark.parametrize(("spec", "frame"), [(BINARY, binary_frame()), (MULTI, multi_frame())])
def test_accuracy(spec: ModelSpec, frame: pl.DataFrame) -> None:
    r = one("accuracy", spec, frame)
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    assert r.value == pytest.approx(skm.accuracy_score(y, p), abs=TOL)
    low, high = wilson(int(np.sum(y == p)), y.size, 0.95)
    assert (r.ci_low, r.ci_high, r.n) == (float(low), float(high), y.size)


@pytest.mark.parametrize(("key", "part"), [("precision", 0), ("recall", 1), ("f1", 2)])
@pytest.mark.parametrize("positive", ["spam", "ham"])
def test_binary_precision_recall_f1(key: str, part: int, positive: str) -> None:
    spec = BINARY.model_copy(update={"positive_class": positive})
    frame = binary_frame()
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    results = run(key, spec, frame)
    head = skm.precision_recall_fscore_support(y, p, pos_label=positive, average="binary")
    assert results[0].label is None
    assert results[0].value == pytest.approx(head[part], abs=TOL)
    _ok_interval(results[0])
    per_class = skm.precision_recall_fscore_support(y, p, labels=["ham", "spam"])
    by = labelled(results)
    for i, c in enumerate(["ham", "spam"]):
        assert by[c].value == pytest.approx(per_class[part][i], abs=TOL)
        _ok_interval(by[c])


@pytest.mark.parametrize(("key", "part"), [("precision", 0), ("recall", 1), ("f1", 2)])
def test_multiclass_precision_recall_f1(key: str, part: int) -> None:
    frame = multi_frame()
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    by = labelled(run(key, MULTI, frame))
    macro = skm.precision_recall_fscore_support(y, p, average="macro", zero_division=0)
    assert by["macro"].value == pytest.approx(macro[part], abs=TOL)
    _ok_interval(by["macro"])
    per_class = skm.precision_recall_fscore_support(y, p, labels=CLASSES, zero_division=0)
    for i, c in enumerate(CLASSES):
        assert by[c].value == pytest.approx(per_class[part][i], abs=TOL)
        _ok_interval(by[c])


def test_precision_and_recall_intervals_are_wilson() -> None:
    frame = binary_frame()
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    tp = int(np.sum((y == "spam") & (p == "spam")))
    precision = one("precision", BINARY, frame)
    recall = one("recall", BINARY, frame)
    assert precision.n == int(np.sum(p == "spam")) and recall.n == int(np.sum(y == "spam"))
    for r in (precision, recall):
        low, high = wilson(tp, r.n, 0.95)
        assert (r.ci_low, r.ci_high) == (float(low), float(high))


def test_zero_division_is_sklearns_and_never_a_breach() -> None:
    frame = multi_frame().with_columns(  # "d" is labelled but never predicted
        pl.when(pl.col("prediction") == "d")
        .then(pl.lit("a"))
        .otherwise("prediction")
        .alias("prediction")
    )
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    by = labelled(run("precision", MULTI, frame, options={"threshold": 0.5}))
    assert by["d"].value == 0.0 and by["d"].status is Status.NOT_APPLICABLE
    assert "zero_division=0" in by["d"].detail
    macro = skm.precision_score(y, p, average="macro", zero_division=0)
    assert by["macro"].value == pytest.approx(macro, abs=TOL)


def test_macro_runs_over_the_classes_in_the_window() -> None:
    frame = multi_frame().filter((pl.col("label") != "d") & (pl.col("prediction") != "d"))
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    by = labelled(run("f1", MULTI, frame))
    assert by["macro"].value == pytest.approx(skm.f1_score(y, p, average="macro"), abs=TOL)
    assert by["d"].status is Status.NOT_APPLICABLE and "absent" in by["d"].detail


def test_roc_auc() -> None:
    frame = binary_frame()
    r = one("roc_auc", BINARY, frame)
    expected = skm.roc_auc_score(frame["label"] == "spam", frame["score"])
    assert r.value == pytest.approx(expected, abs=TOL)
    _ok_interval(r)
    frame = multi_frame()
    y, proba = frame["label"].to_numpy(), _proba(frame)
    by = labelled(run("roc_auc", MULTI, frame))
    macro = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=CLASSES)
    assert by["macro"].value == pytest.approx(macro, abs=TOL)
    _ok_interval(by["macro"])
    for i, c in enumerate(CLASSES):
        assert by[c].value == pytest.approx(skm.roc_auc_score(y == c, proba[:, i]), abs=TOL)
        _ok_interval(by[c])


def test_roc_auc_with_the_first_class_positive() -> None:
    frame = binary_frame()
    spec = BINARY.model_copy(update={"positive_class": "ham"})
    r = one("roc_auc", spec, frame.with_columns((1.0 - pl.col("score")).alias("score")))
    expected = skm.roc_auc_score(frame["label"] == "ham", 1.0 - frame["score"].to_numpy())
    assert r.value == pytest.approx(expected, abs=TOL)


def test_pr_auc() -> None:
    frame = binary_frame()
    r = one("pr_auc", BINARY, frame)
    expected = skm.average_precision_score(frame["label"] == "spam", frame["score"])
    assert r.value == pytest.approx(expected, abs=TOL)
    _ok_interval(r)
    frame = multi_frame()
    y, proba = frame["label"].to_numpy(), _proba(frame)
    by = labelled(run("pr_auc", MULTI, frame))
    macro = skm.average_precision_score(label_binarize(y, classes=CLASSES), proba)
    assert by["macro"].value == pytest.approx(macro, abs=TOL)
    _ok_interval(by["macro"])
    for i, c in enumerate(CLASSES):
        expected = skm.average_precision_score(y == c, proba[:, i])
        assert by[c].value == pytest.approx(expected, abs=TOL)
        _ok_interval(by[c])


def test_log_loss_and_brier() -> None:
    frame = binary_frame()
    y, score = frame["label"].to_numpy() == "spam", frame["score"].to_numpy()
    loss, brier = one("log_loss", BINARY, frame), one("brier", BINARY, frame)
    assert loss.value == pytest.approx(skm.log_loss(y, score), abs=TOL)
    assert brier.value == pytest.approx(skm.brier_score_loss(y, score), abs=TOL)
    frame = multi_frame()
    labels, proba = frame["label"].to_numpy(), _proba(frame)
    loss_m, brier_m = one("log_loss", MULTI, frame), one("brier", MULTI, frame)
    assert loss_m.value == pytest.approx(skm.log_loss(labels, proba, labels=CLASSES), abs=TOL)
    multi_brier = skm.brier_score_loss(labels, proba, labels=CLASSES)  # mean of summed squares
    assert brier_m.value == pytest.approx(multi_brier, abs=TOL)
    for r in (loss, brier, loss_m, brier_m):
        _ok_interval(r)


def _ece(hit: np.ndarray, confidence: np.ndarray, n_bins: int) -> float:
    """Expected calibration error from sklearn's calibration_curve and its binning."""
    prob_true, prob_pred = calibration_curve(hit, confidence, n_bins=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=n_bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / hit.size * np.abs(prob_true - prob_pred)))


@pytest.mark.parametrize("n_bins", [10, 7])
def test_calibration_error(n_bins: int) -> None:
    frame = binary_frame()
    r = one("calibration_error", BINARY, frame, options={"n_bins": n_bins})
    expected = _ece(frame["label"].to_numpy() == "spam", frame["score"].to_numpy(), n_bins)
    assert r.value == pytest.approx(expected, abs=TOL)
    _ok_interval(r)
    frame = multi_frame()
    proba = _proba(frame)
    hit = np.array(CLASSES)[proba.argmax(axis=1)] == frame["label"].to_numpy()
    r = one("calibration_error", MULTI, frame, options={"n_bins": n_bins})
    assert r.value == pytest.approx(_ece(hit, proba.max(axis=1), n_bins), abs=TOL)
    _ok_interval(r)


@pytest.mark.parametrize(("spec", "frame"), [(BINARY, binary_frame()), (MULTI, multi_frame())])
def test_confusion_matrix(spec: ModelSpec, frame: pl.DataFrame) -> None:
    classes = spec.class_list
    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    table = skm.confusion_matrix(y, p, labels=classes)
    by = labelled(run("confusion_matrix", spec, frame, options={"threshold": 1}))
    assert len(by) == len(classes) ** 2
    for a, actual in enumerate(classes):
        for q, predicted in enumerate(classes):
            cell = by[f"{actual}|{predicted}"]
            assert (cell.value, cell.n, cell.status) == (table[a, q], y.size, Status.OK)


def test_integer_labels_are_class_names() -> None:
    spec = ModelSpec.model_validate({"name": "i", "task": "binary", "features": FEATURES})
    frame = pl.DataFrame({"label": [0, 1, 1, None], "prediction": [0.0, 1.0, 0.0, 1.0]})
    r = one("accuracy", spec, frame)
    assert r.value == pytest.approx(2 / 3) and r.n == 3


# --- bad data -------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(("spec", "frame"), [(BINARY, binary_frame()), (MULTI, multi_frame())])
def test_empty_and_small_windows_are_insufficient(
    key: str, spec: ModelSpec, frame: pl.DataFrame
) -> None:
    [empty] = run(key, spec, frame.head(0), options={"threshold": 0.5})
    assert (empty.status, empty.value, empty.n) == (Status.INSUFFICIENT_DATA, None, 0)
    [small] = run(key, spec, frame.head(20), min_samples=30, options={"threshold": 0.5})
    assert (small.status, small.value, small.n) == (Status.INSUFFICIENT_DATA, None, 20)
    assert "minimum 30" in small.detail


@pytest.mark.parametrize("key", KEYS)
def test_no_labels(key: str) -> None:
    frame = binary_frame(50)
    [missing] = run(key, BINARY, frame.drop("label"))
    [nulls] = run(key, BINARY, frame.with_columns(pl.lit(None, pl.String).alias("label")))
    assert missing.status is Status.NO_LABELS and nulls.status is Status.NO_LABELS


def test_only_joined_rows_count() -> None:
    frame = binary_frame(100).with_columns(
        pl.when(pl.int_range(pl.len()) < 40).then(None).otherwise(pl.col("label")).alias("label")
    )
    assert one("accuracy", BINARY, frame).n == 60


def test_single_class_windows() -> None:
    frame = binary_frame().filter(pl.col("label") == "ham")
    for key in ("roc_auc", "pr_auc"):
        r = one(key, BINARY, frame)
        assert (r.status, r.value, r.detail) == (
            Status.NOT_APPLICABLE,
            None,
            "only one class present",
        )
    assert one("accuracy", BINARY, frame).status is Status.OK
    recall = one("recall", BINARY, frame, options={"threshold": 0.9})  # spam never labelled
    assert (recall.value, recall.status) == (0.0, Status.NOT_APPLICABLE)
    multi = multi_frame().filter(pl.col("label") == "b")
    for key in ("roc_auc", "pr_auc"):
        r = one(key, MULTI, multi)
        assert (r.status, r.label) == (Status.NOT_APPLICABLE, "macro")
    assert one("log_loss", MULTI, multi).status is Status.OK


def test_absent_class_is_left_out_of_the_ovr_macro() -> None:
    frame = multi_frame().filter(pl.col("label") != "d")
    y, proba = frame["label"].to_numpy(), _proba(frame)
    by = labelled(run("roc_auc", MULTI, frame))
    expected = np.mean([skm.roc_auc_score(y == c, proba[:, i]) for i, c in enumerate("abc")])
    assert by["macro"].value == pytest.approx(expected, abs=TOL)
    assert "3 of 4 classes" in by["macro"].detail
    assert by["d"].status is Status.NOT_APPLICABLE


@pytest.mark.parametrize("key", SCORE_KEYS)
def test_no_scores(key: str) -> None:
    frame = binary_frame(100)
    for window in (
        frame.drop("score"),
        frame.with_columns(pl.lit(None, pl.Float64).alias("score")),
    ):
        [r] = run(key, BINARY, window)
        assert r.status is Status.NOT_APPLICABLE and "no scores" in r.detail
    [r] = run(key, MULTI, multi_frame(100).drop("score_c"))
    assert r.status is Status.NOT_APPLICABLE and "score_c" in r.detail
    assert one("accuracy", BINARY, frame.drop("score")).status is Status.OK


@pytest.mark.parametrize("key", SCORE_KEYS)
def test_bad_scores_are_left_out_and_counted(key: str) -> None:
    frame = binary_frame()
    bad = pl.Series([np.nan, np.inf, -np.inf, 1.5, -0.1, None], dtype=pl.Float64)
    dirty = frame.with_columns(pl.concat([bad, frame["score"].slice(bad.len())]).alias("score"))
    r, clean = one(key, BINARY, dirty), one(key, BINARY, frame.slice(bad.len()))
    assert r.n == frame.height - bad.len()
    assert r.value == pytest.approx(clean.value, abs=TOL)
    assert "6 rows with a missing, non-finite or out-of-[0, 1] score left out" in r.detail


def test_labels_outside_the_classes_and_odd_predictions() -> None:
    frame = binary_frame(200).with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("eggs")).otherwise("label").alias("label"),
        pl.when(pl.int_range(pl.len()).is_between(3, 6))
        .then(pl.lit("?"))
        .when(pl.int_range(pl.len()) == 7)
        .then(None)
        .otherwise("prediction")
        .alias("prediction"),
    )
    r = one("accuracy", BINARY, frame)
    kept = frame.slice(3).filter(pl.col("prediction").is_not_null())
    assert r.n == 196
    expected = skm.accuracy_score(kept["label"].to_numpy(), kept["prediction"].to_numpy())
    assert r.value == pytest.approx(expected, abs=TOL)
    for note in ("3 rows with a label outside", "1 rows without a prediction", "4 predictions"):
        assert note in r.detail


@pytest.mark.parametrize("key", KEYS)
def test_wrong_task_is_not_applicable(key: str) -> None:
    frame = pl.DataFrame({"label": [1.0, 2.0], "prediction": [1.0, 2.5]})
    [r] = run(key, REGRESSION, frame)
    assert r.status is Status.NOT_APPLICABLE and "regression" in r.detail


@pytest.mark.parametrize(
    "options",
    [{"confidence": 2}, {"threshold": "high"}, {"bootstrap": -1}, {"seed": 1.5}, {"n_bins": 0}],
)
def test_bad_options_are_an_error_status(options: dict[str, object]) -> None:
    [r] = run("calibration_error", BINARY, binary_frame(100), options=options)
    assert r.status is Status.ERROR and next(iter(options)) in r.detail


def test_bootstrap_off_and_seeded() -> None:
    frame = binary_frame(500)
    off = one("f1", BINARY, frame, options={"bootstrap": 0})
    assert off.value is not None and off.ci_low is None and off.ci_high is None
    first, again = (one("pr_auc", BINARY, frame, options={"seed": 3}) for _ in range(2))
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)


@pytest.mark.parametrize(
    ("key", "threshold", "status"),
    [
        ("accuracy", 0.99, Status.BREACH),
        ("accuracy", 0.5, Status.OK),
        ("roc_auc", 0.99, Status.BREACH),
        ("log_loss", 0.1, Status.BREACH),
        ("log_loss", 5.0, Status.OK),
        ("calibration_error", 0.001, Status.BREACH),
        ("brier", 0.9, Status.OK),
    ],
)
def test_thresholds(key: str, threshold: float, status: Status) -> None:
    r = one(key, BINARY, binary_frame(), options={"threshold": threshold})
    assert (r.status, r.threshold) == (status, threshold)


def test_threshold_applies_to_every_class() -> None:
    results = run("recall", MULTI, multi_frame(), options={"threshold": 0.62})
    assert {r.status for r in results} == {Status.OK, Status.BREACH}
    assert all(r.threshold == 0.62 for r in results)
