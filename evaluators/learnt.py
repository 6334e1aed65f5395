"""What is learnt from a reference, learnt once and cached with it.

Bands: a figure's mean and spread over window-sized reference chunks (``reference_chunks``,
``learn_bands``), which realized performance metrics and label-free estimates judge windows by.

Multivariate drift learns two models. For ``reconstruction_error``: the encoders (numeric
features mean-imputed and standardised, categorical ones most-frequent-imputed and one-hot or
frequency encoded), a PCA, the out-of-fold reconstruction errors of the reference rows and,
per window-size bucket, the band the window's mean error should stay in. For
``domain_classifier``: the categorical codes and the encoded reference sample.

Cache: the metric context carries no reference id, so the cache is keyed by the baseline
frame object itself (weakly: an entry goes when its frame is collected) and then by the
options and the window-size bucket. The runner keeps one frame per stored reference
dataset (``Runner._reference``), so every window evaluated against a reference reuses what
was learnt from it; a champion-window baseline is a new frame each run and is learnt again.
Frames are treated as immutable, as the drift profiles already assume.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import polars as pl

__all__ = [
    "Band",
    "Chunks",
    "DomainEncoder",
    "Encoder",
    "Reconstruction",
    "cached",
    "fit_domain_encoder",
    "fit_encoder",
    "fit_reconstruction",
    "learn_bands",
    "reference_chunks",
    "size_bucket",
]

T = TypeVar("T")
SLICE_ROWS = 1 << 17  # rows encoded at a time: bounds the memory of a 1M-row window
OOF_FOLDS = 5  # the band is learnt from errors of rows the PCA did not see
MIN_CHUNKS = 20  # fewer reference chunks than this: the band scales the row spread by 1/sqrt(n)
MAX_CHUNKS = 200  # reference chunks a band is learnt from, evenly spaced over the reference
BAND_CHUNKS = 50  # chunks a band needs: with 20 its spread is off by 16 % (sd of an sd)
RESAMPLED_CHUNKS = 100  # window-sized resamples when the reference holds too few chunks
MAX_CODES = 253  # HistGradientBoosting takes at most 255 categories; one more for "other"
PCA_SEED = 16  # NannyML's

_CACHE: dict[int, dict[Hashable, Any]] = {}
_LOCK = threading.Lock()


def cached(baseline: pl.DataFrame, key: Hashable, build: Callable[[], T]) -> T:
    """``build()`` once per (baseline frame, key) while the frame lives."""
    with _LOCK:
        entries = _CACHE.get(id(baseline))
        if entries is None:
            entries = _CACHE.setdefault(id(baseline), {})
            weakref.finalize(baseline, _CACHE.pop, id(baseline), None)
        if key in entries:
            return cast(T, entries[key])
    value = build()
    with _LOCK:
        return cast(T, entries.setdefault(key, value))


def size_bucket(n: int) -> int:
    """Window sizes in quarter steps of log2 (within ±9 %), so bands are learnt per bucket."""
    return max(1, round(2 ** (round(4 * math.log2(max(n, 1))) / 4)))


# --- bands from reference chunks ---------------------------------------------------------------


@dataclass(frozen=True)
class Chunks:
    """Window-sized pieces of a reference, ``size`` rows each, and how they were cut."""

    frames: tuple[pl.DataFrame, ...]
    size: int
    how: str


def reference_chunks(rows: pl.DataFrame, size: int, seed: int) -> Chunks:
    """Consecutive chunks of ``size`` rows, as NannyML cuts its reference, when there are at
    least ``BAND_CHUNKS`` (at most ``MAX_CHUNKS``, evenly spaced); else ``RESAMPLED_CHUNKS``
    samples of min(size, rows) rows drawn with replacement, whose spread is that of a window
    of that size from the reference's distribution. (Measured: 29 chunks of 1,024 put the
    accuracy band's sd 19 % low and 1.7 % of null windows outside a 3 sd band.)"""
    size = max(size, 1)
    count = rows.height // size
    if count >= BAND_CHUNKS:
        picked = np.unique(np.linspace(0, count - 1, min(count, MAX_CHUNKS)).round().astype(int))
        frames = tuple(rows.slice(int(i) * size, size) for i in picked)
        return Chunks(frames, size, f"{picked.size} reference chunks of {size}")
    used = min(size, rows.height)
    rng = np.random.default_rng(seed)
    frames = tuple(rows[rng.integers(0, rows.height, used)] for _ in range(RESAMPLED_CHUNKS))
    return Chunks(frames, used, f"{RESAMPLED_CHUNKS} resamples of {used} reference rows")


@dataclass(frozen=True)
class Band:
    """Mean and standard deviation of a figure over reference chunks of ``size`` rows."""

    centre: float
    spread: float
    size: int
    how: str

    def edges(
        self, n: int, sigmas: float, lo: float = -math.inf, hi: float = math.inf
    ) -> tuple[float, float]:
        """``centre ± sigmas · spread`` for a window of ``n`` rows (the spread scaled by
        sqrt(size / n) from the chunks' size to the window's), clipped to [lo, hi]."""
        half = sigmas * self.spread * math.sqrt(self.size / max(n, 1))
        return max(lo, self.centre - half), min(hi, self.centre + half)


def learn_bands(
    chunks: Chunks, figures: Callable[[pl.DataFrame], dict[Hashable, float]]
) -> dict[Hashable, Band]:
    """Per figure key, the band of its values over the chunks (``figures`` gives a chunk's
    figures; a key needs two chunks with a value)."""
    values: dict[Hashable, list[float]] = {}
    for frame in chunks.frames:
        for key, value in figures(frame).items():
            if math.isfinite(value):
                values.setdefault(key, []).append(value)
    return {
        key: Band(float(np.mean(v)), float(np.std(v, ddof=1)), chunks.size, chunks.how)
        for key, v in values.items()
        if len(v) >= 2
    }


# --- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Numeric:
    """A numeric feature: NaN, inf and nulls become ``mean``, then ``(x - mean) / scale``."""

    column: str
    mean: float
    scale: float

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        values = frame.get_column(self.column).cast(pl.Float64).to_numpy()
        values = np.where(np.isfinite(values), values, self.mean)
        return ((values - self.mean) / self.scale)[:, None]


@dataclass(frozen=True)
class Categorical:
    """A categorical feature: nulls become ``fill``; each value's code picks a row of
    ``table`` (codes: ``categories`` in order, then one for any other value)."""

    column: str
    categories: tuple[str, ...]
    fill: str
    table: np.ndarray

    def codes(self, frame: pl.DataFrame) -> np.ndarray:
        values = frame.get_column(self.column).cast(pl.String).fill_null(self.fill)
        positions = range(len(self.categories))
        coded = values.replace_strict(
            self.categories, positions, default=len(self.categories), return_dtype=pl.Int32
        )
        return coded.to_numpy()

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.table[self.codes(frame)])


@dataclass(frozen=True)
class Encoder:
    """Reference-learnt encoding of the features into a standardised matrix."""

    parts: tuple[Numeric | Categorical, ...]

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        return np.hstack([part.encode(frame) for part in self.parts])


def _scale(std: np.ndarray) -> np.ndarray:
    """As scikit-learn's StandardScaler: a (near-)constant column keeps scale 1."""
    return np.where(std < 10 * np.finfo(np.float64).eps, 1.0, std)


def _numeric(series: pl.Series, column: str) -> Numeric | None:
    values = series.cast(pl.Float64).to_numpy()
    finite = np.isfinite(values)
    if not finite.any():
        return None
    mean = float(values[finite].mean())
    imputed = np.where(finite, values, mean)
    return Numeric(column, mean, float(_scale(np.array([imputed.std()]))[0]))


def _ranked(series: pl.Series) -> tuple[list[str], np.ndarray]:
    """The values, most frequent first (ties in value order, as SimpleImputer), and counts."""
    values = series.cast(pl.String).drop_nulls().rename("value")
    counts = values.value_counts(name="count").sort(["count", "value"], descending=[True, False])
    return counts.get_column("value").to_list(), counts.get_column("count").to_numpy()


def _categorical(
    series: pl.Series, column: str, encoding: str, max_categories: int
) -> Categorical | None:
    names, counts = _ranked(series)
    if not names:
        return None
    freq = counts.astype(np.float64)
    freq[0] += series.null_count()  # most-frequent imputation, as NannyML's SimpleImputer
    freq /= freq.sum()
    if encoding == "frequency":  # NannyML's CountEncoder(normalize=True); unseen values: 0
        encoded = np.append(freq, 0.0)
        p = np.append(freq, 0.0)
        mean = float(p @ encoded)
        std = math.sqrt(float(p @ (encoded - mean) ** 2))
        table = ((encoded - mean) / _scale(np.array([std])))[:, None]
        return Categorical(column, tuple(names), names[0], table)
    kept = min(max_categories, len(names))
    p = np.append(freq[:kept], freq[kept:].sum())  # the last code: rare and unseen values
    table = (np.eye(kept + 1) - p) / _scale(np.sqrt(p * (1 - p)))
    return Categorical(column, tuple(names[:kept]), names[0], table)


def fit_encoder(
    baseline: pl.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    encoding: str = "onehot",
    max_categories: int = 20,
) -> tuple[Encoder, list[str]]:
    """The encoder, and the columns left out because the baseline holds no value in them."""
    parts: list[Numeric | Categorical] = []
    empty: list[str] = []
    for column in numeric:
        part: Numeric | Categorical | None = _numeric(baseline.get_column(column), column)
        parts.append(part) if part else empty.append(column)
    for column in categorical:
        part = _categorical(baseline.get_column(column), column, encoding, max_categories)
        parts.append(part) if part else empty.append(column)
    return Encoder(tuple(parts)), empty


# --- reconstruction ---------------------------------------------------------------------------


def _pca(data: np.ndarray, n_components: float | int) -> Any:
    from sklearn.decomposition import PCA  # imported when first needed: it is slow to import

    return PCA(n_components=n_components, random_state=PCA_SEED).fit(data)


def _row_errors(data: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row to its PCA reconstruction."""
    centred = data - mean
    residual = centred - (centred @ components.T) @ components
    return np.asarray(np.sqrt(np.einsum("ij,ij->i", residual, residual)))


@dataclass(frozen=True)
class Projection:
    """A PCA applied without building the one-hot matrix: each categorical value's part of the
    centred row's projection and squared norm is looked up (error² = |e|² - |V e|²)."""

    numeric: tuple[Numeric, ...]
    numeric_mean: np.ndarray
    numeric_components: np.ndarray
    categorical: tuple[Categorical, ...]
    lookups: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def of(cls, encoder: Encoder, mean: np.ndarray, components: np.ndarray) -> Projection:
        numeric, categorical, lookups, at = [], [], [], 0
        numeric_at: list[int] = []
        for part in encoder.parts:
            if isinstance(part, Numeric):
                numeric.append(part)
                numeric_at.append(at)
                at += 1
                continue
            width = part.table.shape[1]
            centred = part.table - mean[at : at + width]
            projected = centred @ components[:, at : at + width].T
            lookups.append((projected, np.einsum("ij,ij->i", centred, centred)))
            categorical.append(part)
            at += width
        return cls(
            tuple(numeric),
            mean[numeric_at],
            components[:, numeric_at],
            tuple(categorical),
            tuple(lookups),
        )

    def errors(self, frame: pl.DataFrame) -> np.ndarray:
        if self.numeric:
            centred = np.column_stack([p.encode(frame)[:, 0] for p in self.numeric])
            centred -= self.numeric_mean
            projected = centred @ self.numeric_components.T
            squared = np.einsum("ij,ij->i", centred, centred)
        else:
            projected = np.zeros((frame.height, self.numeric_components.shape[0]))
            squared = np.zeros(frame.height)
        for part, (values, norms) in zip(self.categorical, self.lookups, strict=True):
            codes = part.codes(frame)
            projected += values[codes]
            squared += norms[codes]
        residual = squared - np.einsum("ij,ij->i", projected, projected)
        return np.asarray(np.sqrt(np.maximum(residual, 0.0)))


@dataclass(frozen=True)
class Reconstruction:
    """The encoder and PCA learnt from a reference, and its rows' out-of-fold errors."""

    encoder: Encoder
    mean: np.ndarray
    components: np.ndarray
    width: int
    reference_errors: np.ndarray
    projection: Projection

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def errors(self, frame: pl.DataFrame) -> np.ndarray:
        out = [self.projection.errors(part) for part in frame.iter_slices(SLICE_ROWS)]
        return np.concatenate(out) if out else np.empty(0)

    def spread(self, size: int) -> tuple[float, float, str]:
        """Mean and standard deviation of the mean error of ``size`` reference rows: over
        consecutive reference chunks of that size, as NannyML does, or, with fewer than
        ``MIN_CHUNKS`` chunks, the rows' standard deviation divided by sqrt(size)."""
        errors = self.reference_errors
        chunks = errors.size // size
        if chunks >= MIN_CHUNKS:
            means = errors[: chunks * size].reshape(chunks, size).mean(axis=1)
            return float(means.mean()), float(means.std(ddof=1)), f"{chunks} chunks of {size}"
        spread = float(errors.std(ddof=1)) / math.sqrt(size) if errors.size > 1 else 0.0
        return float(errors.mean()), spread, f"the rows' spread / sqrt({size})"


def fit_reconstruction(
    encoder: Encoder, baseline: pl.DataFrame, variance: float, seed: int
) -> Reconstruction:
    """PCA keeping ``variance`` of the standardised reference's variance; the reference rows'
    errors come from PCAs (as many components) fitted on the other folds, since errors of
    rows a PCA was fitted on are biased low and would put the band below new data."""
    data = encoder.transform(baseline)
    pca = _pca(data, variance)
    k = int(pca.n_components_)
    if data.shape[0] >= 2 * OOF_FOLDS * k:
        errors = _out_of_fold_errors(data, k, seed)
    else:  # too few rows to hold any out
        errors = _row_errors(data, pca.mean_, pca.components_)
    projection = Projection.of(encoder, pca.mean_, pca.components_)
    return Reconstruction(encoder, pca.mean_, pca.components_, data.shape[1], errors, projection)


def _out_of_fold_errors(data: np.ndarray, k: int, seed: int) -> np.ndarray:
    errors = np.empty(data.shape[0])
    folds = np.array_split(np.random.default_rng(seed).permutation(data.shape[0]), OOF_FOLDS)
    for held in folds:
        train = np.ones(data.shape[0], dtype=bool)
        train[held] = False
        fold = _pca(data[train], k)
        errors[held] = _row_errors(data[held], fold.mean_, fold.components_)
    return errors


# --- domain classifier ------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainEncoder:
    """Features as HistGradientBoosting takes them: numeric values (NaN for missing), category
    codes (the reference's ``MAX_CODES`` most frequent, then one code for any other value)."""

    numeric: tuple[str, ...]
    categorical: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def categorical_mask(self) -> np.ndarray:
        return np.array([False] * len(self.numeric) + [True] * len(self.categorical))

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        columns = [
            frame.get_column(c).cast(pl.Float64).fill_null(np.nan).to_numpy() for c in self.numeric
        ]
        for column, kept in self.categorical:
            values = frame.get_column(column).cast(pl.String)
            coded = values.replace_strict(
                kept, range(len(kept)), default=len(kept), return_dtype=pl.Float64
            )
            columns.append(np.where(values.is_null().to_numpy(), np.nan, coded.to_numpy()))
        out = np.column_stack(columns) if columns else np.empty((frame.height, 0))
        out[~np.isfinite(out)] = np.nan
        return out


def fit_domain_encoder(
    baseline: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> DomainEncoder:
    kept = []
    for column in categorical:
        names, _ = _ranked(baseline.get_column(column))
        kept.append((column, tuple(names[:MAX_CODES])))
    return DomainEncoder(tuple(numeric), tuple(kept))
