"""Multivariate drift: golden values against NannyML and scikit-learn, correlation drift that
no univariate test sees, the reference-learnt parts fitted once, and the no-drift false-alarm
rate by seeded simulation."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from evaluators import learnt
from evaluators.base import EvalContext, MetricResult, Status, get_metric
from evaluators.metrics import multivariate
from modelwatch.domain import ModelSpec

# --- data -------------------------------------------------------------------------------------


def spec_for(frame: pl.DataFrame, text: tuple[str, ...] = ()) -> ModelSpec:
    features = [
        {
            "name": c,
            "type": "text"
            if c in text
            else "numeric"
            if frame[c].dtype.is_numeric()
            else "categorical",
        }
        for c in frame.columns
    ]
    return ModelSpec.model_validate({"name": "m", "task": "binary", "features": features})


def correlated(n: int, seed: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return a, rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n)


def golden_frames(name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A 3,000-row reference and a 2,000-row analysis set (second half: correlation of f0 and
    f1 flipped from +0.8 to -0.8), with missing values; ``mixed`` adds two categoricals."""

    def part(n: int, seed: int, rho: float) -> pl.DataFrame:
        rng = np.random.default_rng(seed + 100)
        f0, f1 = correlated(n, seed, rho)
        f2 = 0.5 * f0 + rng.normal(size=n)
        f3 = rng.exponential(2.0, n)
        f3[rng.random(n) < 0.03] = np.nan
        cols: dict[str, Any] = {"f0": f0, "f1": f1, "f2": f2, "f3": f3}
        if name == "mixed":
            cols["g0"] = rng.choice(["a", "b", "c"], n, p=[0.55, 0.3, 0.15]).tolist()
            g1 = rng.choice(["x", "y", "z", "w"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
            g1[rng.random(n) < 0.05] = None
            cols["g1"] = g1.tolist()
        return pl.DataFrame(cols)

    reference = part(3000, 1, 0.8)
    analysis = pl.concat([part(1000, 2, 0.8), part(1000, 3, -0.8)])
    return reference, analysis


def run(
    key: str, window: pl.DataFrame, baseline: pl.DataFrame | None, spec: ModelSpec, **opts: Any
) -> list[MetricResult]:
    ctx = EvalContext(spec, window, baseline, options=opts, min_samples=30)
    return get_metric(key).compute(ctx)


def by_label(results: list[MetricResult]) -> dict[tuple[str | None, str | None], MetricResult]:
    return {(r.column, r.label): r for r in results}


# --- golden values ----------------------------------------------------------------------------

# NannyML 0.13.1 (scikit-learn 1.9.1, category_encoders 2.11.2, numpy 2.4.6, pandas 3.1.1) in its
# own virtualenv: golden_frames(name) written to parquet, then
#   /tmp/nannyml-venv/bin/python bench/nannyml_side.py ref.parquet analysis.parquet \
#       --columns f0,f1,f2,f3[,g0,g1] --chunk-size 1000
# gave DataReconstructionDriftCalculator(column_names=..., chunk_size=1000) these values for the
# two analysis chunks (n_components 0.65, mean/most-frequent imputation, CountEncoder).
NANNYML_NUMERIC = (0.8164942345836816, 1.3815425075394863)
NANNYML_MIXED = (1.246923903706532, 1.708296161143253)  # categoricals frequency-encoded


@pytest.mark.parametrize(
    ("name", "expected", "options"),
    [
        ("numeric", NANNYML_NUMERIC, {}),
        ("mixed", NANNYML_MIXED, {"encoding": "frequency"}),
    ],
)
def test_reconstruction_error_equals_nannyml(
    name: str, expected: tuple[float, float], options: dict[str, Any]
) -> None:
    reference, analysis = golden_frames(name)
    for i, value in enumerate(expected):
        chunk = analysis[i * 1000 : (i + 1) * 1000]
        result = run("reconstruction_error", chunk, reference, spec_for(reference), **options)[0]
        assert result.value == pytest.approx(value, rel=1e-9), (name, i)
    # NannyML alerts on the flipped chunk only; so does the band learnt here
    statuses = [
        run(
            "reconstruction_error",
            analysis[i * 1000 : (i + 1) * 1000],
            reference,
            spec_for(reference),
            **options,
        )[0].status
        for i in range(2)
    ]
    assert statuses == [Status.OK, Status.BREACH]


def test_domain_classifier_auc_is_roc_auc_of_cross_validated_probabilities() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    reference, analysis = golden_frames("mixed")
    window = analysis[1000:]
    result = by_label(run("domain_classifier", window, reference, spec_for(reference)))
    encoder = learnt.fit_domain_encoder(reference, ["f0", "f1", "f2", "f3"], ["g0", "g1"])
    x = np.vstack([encoder.transform(reference), encoder.transform(window)])
    y = np.r_[np.zeros(reference.height), np.ones(window.height)]
    model = HistGradientBoostingClassifier(
        **multivariate.HGB_PARAMS, categorical_features=encoder.categorical_mask, random_state=0
    )
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    with threadpool_limits(1, user_api="openmp"):  # OpenMP spin-waits on a shared machine
        probabilities = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    assert result[(None, None)].value == pytest.approx(roc_auc_score(y, probabilities), abs=1e-12)
    assert result[(None, None)].status is Status.BREACH
    drops = {c: result[(c, "importance")].value for c in ("f0", "f1", "f2", "f3", "g0", "g1")}
    assert max(drops, key=lambda c: drops[c] or 0) in ("f0", "f1"), drops


# --- correlation drift ------------------------------------------------------------------------


def flip_frame(n: int, seed: int, rho: float) -> pl.DataFrame:
    """a and b correlated by ``rho`` (marginals N(0, 1) whatever rho), beside noise features."""
    rng = np.random.default_rng(seed + 1000)
    a, b = correlated(n, seed, rho)
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.normal(size=n),
            "d": rng.gamma(2.0, 1.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]).tolist(),
        }
    )


def test_a_correlation_flip_breaches_both_keys_and_no_univariate_test() -> None:
    reference = flip_frame(20_000, 1, 0.8)
    spec = spec_for(reference)
    before = flip_frame(1000, 2, 0.8)
    windows = [flip_frame(1000, seed, -0.8) for seed in (3, 4)]
    for window in windows:
        univariate = run("data_drift", window, reference, spec)
        assert all(r.status is Status.OK for r in univariate), [
            (r.column, r.label, r.status) for r in univariate if r.status is not Status.OK
        ]
    for key in ("reconstruction_error", "domain_classifier"):
        assert run(key, before, reference, spec)[0].status is Status.OK, key
        statuses = [run(key, w, reference, spec)[0].status for w in windows]
        assert Status.BREACH in statuses, (key, statuses)
    shuffled = by_label(run("domain_classifier", windows[0], reference, spec))
    importance = {c: shuffled[(c, "importance")].value or 0.0 for c in reference.columns}
    assert sorted(importance, key=importance.__getitem__)[-2:] in (["a", "b"], ["b", "a"])


# --- learnt once --------------------------------------------------------------------------------


def test_what_is_learnt_from_a_reference_is_learnt_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fits = {"pca": 0, "domain": 0}
    pca_fit, domain_fit = learnt.fit_reconstruction, multivariate._domain_reference

    def counted_pca(*args: Any) -> learnt.Reconstruction:
        fits["pca"] += 1
        return pca_fit(*args)

    def counted_domain(*args: Any) -> multivariate.DomainReference:
        fits["domain"] += 1
        return domain_fit(*args)

    monkeypatch.setattr(learnt, "fit_reconstruction", counted_pca)
    monkeypatch.setattr(multivariate, "_domain_reference", counted_domain)
    reference = flip_frame(5000, 1, 0.8)
    spec = spec_for(reference)
    for seed, n in ((2, 500), (3, 510), (4, 490)):  # one window-size bucket
        for key in ("reconstruction_error", "domain_classifier"):
            assert run(key, flip_frame(n, seed, 0.8), reference, spec)[0].status is Status.OK
    assert fits == {"pca": 1, "domain": 1}
    run("reconstruction_error", flip_frame(500, 5, 0.8), reference, spec, variance=0.8)
    assert fits["pca"] == 2  # other options: learnt again
    assert learnt.size_bucket(500) == learnt.size_bucket(510) == learnt.size_bucket(490)


# --- bad data -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["reconstruction_error", "domain_classifier"])
def test_bad_data(key: str) -> None:
    reference = flip_frame(3000, 1, 0.8).with_columns(
        pl.lit("some words").alias("note"), pl.lit(None, dtype=pl.Float64).alias("empty")
    )
    spec = spec_for(reference, text=("note",))
    window = flip_frame(600, 2, 0.8).with_columns(
        pl.lit("other words").alias("note"), pl.lit(1.0).alias("empty")
    )
    result = run(key, window, reference, spec)[0]
    assert result.status is Status.OK
    assert "left out: note (text), empty (no value in the baseline)" in result.detail
    assert run(key, window, None, spec)[0].status is Status.NO_BASELINE
    small = run(key, window.head(10), reference, spec)
    assert [r.status for r in small] == [Status.INSUFFICIENT_DATA]
    unseen = window.with_columns(pl.lit("enterprise").alias("plan"))
    assert run(key, unseen, reference, spec)[0].status is Status.BREACH
    holes = window.with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("c")).alias("c")
    )
    assert run(key, holes, reference, spec)[0].status in (Status.OK, Status.BREACH)
    constant = reference.with_columns(pl.lit(2.0).alias("c"))
    assert run(key, window, constant, spec)[0].value is not None
    only_text = ModelSpec.model_validate(
        {"name": "t", "task": "binary", "features": [{"name": "note", "type": "text"}]}
    )
    assert run(key, window, reference, only_text)[0].status is Status.NOT_APPLICABLE


def test_bad_options_are_errors() -> None:
    reference = flip_frame(3000, 1, 0.8)
    spec, window = spec_for(reference), flip_frame(600, 2, 0.8)
    for options in ({"variance": 1.5}, {"encoding": "target"}):
        assert run("reconstruction_error", window, reference, spec, **options)[0].status is (
            Status.ERROR
        )
    assert run("domain_classifier", window, reference, spec, folds=1)[0].status is Status.ERROR


def test_user_thresholds() -> None:
    reference = flip_frame(3000, 1, 0.8)
    spec, window = spec_for(reference), flip_frame(600, 2, 0.8)
    low = run("reconstruction_error", window, reference, spec, threshold=0.01)[0]
    assert (low.status, low.threshold) == (Status.BREACH, 0.01)
    band = run("reconstruction_error", window, reference, spec, threshold=[0.0, 100.0])[0]
    assert band.status is Status.OK
    assert (band.band_low, band.band_high) == (0.0, 100.0)  # the band the surfaces draw
    auc = run("domain_classifier", window, reference, spec, threshold=0.2)[0]
    assert (auc.status, auc.threshold) == (Status.BREACH, 0.2)
    assert (auc.band_low, auc.band_high) == (0.0, 0.2)


# --- no drift: false alarms ---------------------------------------------------------------------

N_NUMERIC, N_CATEGORICAL = 20, 5


def production_like(n: int, seed: int) -> pl.DataFrame:
    """20 numeric features (three correlated groups driven by shared factors, the rest
    independent and of several shapes, 1 % missing in two) and 5 categorical ones of skewed
    frequencies (3 to 30 values, 2 % missing in one)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 3))
    cols: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        if i < 9:
            values = 0.7 * factors[:, i % 3] + 0.7 * rng.normal(size=n)
        else:
            values = [rng.normal, rng.standard_exponential, rng.uniform][i % 3](size=n)
        if i in (4, 13):
            values[rng.random(n) < 0.01] = np.nan
        cols[f"num_{i}"] = values
    for j, size in enumerate((3, 5, 8, 12, 30)):
        p = 1 / np.arange(1, size + 1)
        values = rng.choice([f"v{k}" for k in range(size)], n, p=p / p.sum()).astype(object)
        if j == 2:
            values[rng.random(n) < 0.02] = None
        cols[f"cat_{j}"] = values.tolist()
    return pl.DataFrame(cols)


def false_alarms(key: str, windows: int, reference: pl.DataFrame, n: int = 1000) -> list[float]:
    spec = spec_for(reference)
    breaches, values = 0, []
    for seed in range(windows):
        result = run(key, production_like(n, 10_000 + seed), reference, spec)[0]
        assert result.status in (Status.OK, Status.BREACH), result
        breaches += result.status is Status.BREACH
        values.append(result.value or 0.0)
    print(f"{key}: {breaches} of {windows} no-drift windows in breach; max {max(values):.4f}")
    return [breaches / windows, *values]


def test_no_drift_reconstruction_error_rarely_alarms() -> None:
    reference = production_like(100_000, 1)
    rate, *_ = false_alarms("reconstruction_error", 60, reference)
    assert rate <= 1 / 60


@pytest.mark.reliability
def test_no_drift_false_alarm_rates() -> None:
    """720 windows for the reconstruction error, 240 for the domain classifier; the rate of
    data_drift's own false alarms on the same windows is printed beside them."""
    reference = production_like(100_000, 1)
    spec = spec_for(reference)
    rate, *values = false_alarms("reconstruction_error", 720, reference)
    assert rate <= 0.005
    model = next(
        v for v in learnt._CACHE[id(reference)].values() if isinstance(v, learnt.Reconstruction)
    )
    in_sample = learnt._row_errors(model.encoder.transform(reference), model.mean, model.components)
    chunks = in_sample[: 97 * 1024].reshape(97, 1024).mean(axis=1)
    upper = chunks.mean() + 3 * chunks.std(ddof=1) * np.sqrt(1024 / 1000)
    print(f"an in-sample band (NannyML's) would breach {np.mean(np.array(values) > upper):.1%}")
    auc_rate, *aucs = false_alarms("domain_classifier", 240, reference)
    assert auc_rate <= 0.005
    print(f"domain_classifier AUC: mean {np.mean(aucs):.4f}, sd {np.std(aucs, ddof=1):.4f}")
    drifted = 0
    for seed in range(240):
        results = run("data_drift", production_like(1000, 10_000 + seed), reference, spec)
        drifted += any(r.status is Status.BREACH for r in results)
    print(f"data_drift: {drifted} of 240 windows with any column in breach")
