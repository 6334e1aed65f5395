"""The loss models learnt from a regression reference, for direct loss estimation (DLE).

Direct loss estimation as NannyML does it
(https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html#direct-loss-estimation-dle):
a second model learns, from the reference rows whose target is known, each row's loss from its
features and the monitored model's prediction; a window's expected loss is the mean of the
predicted losses of its rows. NannyML fits LightGBM; here it is scikit-learn's
``HistGradientBoostingRegressor`` (the same histogram gradient boosting, default settings,
``random_state`` the seed), one for the absolute error and one for the squared error.

The reference is split: a seeded random ``FIT_FRACTION`` of its labelled rows fits the models,
the rest (``held_out``, in the reference's order) is where the bands are learnt, from its
chunks (:func:`evaluators.learnt.reference_chunks`): the realized loss of rows the loss models
never saw is what windows are compared with. Features are encoded as the domain classifier
encodes them (:class:`evaluators.learnt.DomainEncoder`: numeric values with NaN for missing,
category codes), the prediction is the last column. Learnt once per reference frame and cached
(:func:`evaluators.learnt.cached`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from evaluators import learnt
from evaluators.intervals import Floats

__all__ = ["FIT_FRACTION", "PREDICTED", "LossModels", "fit_loss_models", "fit_rows"]

FIT_FRACTION = 0.5
# Columns of ``held_out``: each row's predicted absolute and squared error.
PREDICTED = ("__predicted_absolute_error", "__predicted_squared_error")


def fit_rows(n: int, seed: int) -> np.ndarray:
    """Which of ``n`` labelled reference rows fit the loss models (a seeded random half)."""
    picked = np.random.default_rng(seed).permutation(n)[: round(n * FIT_FRACTION)]
    mask = np.zeros(n, dtype=bool)
    mask[picked] = True
    return mask


@dataclass(frozen=True)
class LossModels:
    """Two fitted regressors (absolute and squared error) and the rows they did not see,
    with their predicted losses (``PREDICTED``)."""

    encoder: learnt.DomainEncoder
    absolute: Any
    squared: Any
    held_out: pl.DataFrame
    fitted: int

    def matrix(self, frame: pl.DataFrame, prediction: Floats) -> np.ndarray:
        return np.column_stack([self.encoder.transform(frame), prediction])

    def predict(self, frame: pl.DataFrame, prediction: Floats) -> tuple[Floats, Floats]:
        """Each row's expected absolute and squared error (a loss is never negative, so
        predictions below 0 are clipped to 0, as NannyML does)."""
        x = self.matrix(frame, prediction)
        with _one_thread():
            absolute = np.asarray(self.absolute.predict(x), dtype=np.float64)
            squared = np.asarray(self.squared.predict(x), dtype=np.float64)
        return np.maximum(absolute, 0.0), np.maximum(squared, 0.0)


@functools.cache
def _controller() -> Any:
    """threadpoolctl's controller, built once: building one takes 4 ms (it loads every
    library), as much as predicting a window. Built after scikit-learn is imported."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_thread() -> Any:
    """One OpenMP thread for the loss models: OpenMP teams spin-wait, and on a busy 2-core
    machine predicting 1,000 rows took 220-260 ms a window with the default threads, 15 ms
    with one."""
    return _controller().limit(limits=1, user_api="openmp")


def _regressor(categorical: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor  # slow to import

    return HistGradientBoostingRegressor(
        categorical_features=categorical if categorical.any() else None, random_state=seed
    )


def fit_loss_models(
    rows: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str], seed: int
) -> LossModels:
    """Fit on the seeded half of ``rows`` (reference rows with a finite ``label`` and
    ``prediction``, both Float64); the other half is kept for the bands."""
    mask = fit_rows(rows.height, seed)
    fit = rows.filter(pl.Series(mask))
    encoder = learnt.fit_domain_encoder(fit, numeric, categorical)
    prediction = fit["prediction"].to_numpy()
    error = prediction - fit["label"].to_numpy()
    x = np.column_stack([encoder.transform(fit), prediction])
    kinds = np.append(encoder.categorical_mask, False).astype(bool)
    absolute, squared = _regressor(kinds, seed), _regressor(kinds, seed)
    with _one_thread():
        absolute.fit(x, np.abs(error))
        squared.fit(x, error**2)
    models = LossModels(encoder, absolute, squared, rows.filter(pl.Series(~mask)), fit.height)
    held = models.held_out
    predicted = models.predict(held, held["prediction"].to_numpy())
    held = held.with_columns(
        pl.Series(PREDICTED[0], predicted[0]), pl.Series(PREDICTED[1], predicted[1])
    )
    return replace(models, held_out=held)
