"""Calibration maps (isotonic, scikit-learn) as the label-free estimates apply them."""

from __future__ import annotations

import numpy as np


def test_the_maps_apply_as_scikit_learn_predicts() -> None:
    """The interpolation the maps are applied with is IsotonicRegression.predict's, out of
    range values clipped, to the last bit on a seeded sample."""
    from sklearn.isotonic import IsotonicRegression

    from evaluators.calibration import _predict

    rng = np.random.default_rng(3)
    x = rng.random(2_000)
    y = (rng.random(2_000) < x**2).astype(np.float64)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    probe = np.r_[rng.uniform(-0.2, 1.2, 5_000), x[:100], 0.0, 1.0]
    assert np.array_equal(_predict(fitted, probe), fitted.predict(probe))
