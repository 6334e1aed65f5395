"""The demo's models: their schemas and seeded, vectorised 'predict' functions.

Fraud has three scorers drawn together per batch: the champion (v1, misses the
fraud wave), the shadow challenger (v2, a little better at travel merchants) and
the retrained model (v3, what the demo pipeline trains once drift is detected:
it knows the wave, so it is as good as the data allow during it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

__all__ = ["ETA", "FRAUD", "Batch", "eta_batch", "fraud_batch", "fraud_frame", "fraud_reference"]

FRAUD: dict[str, Any] = {
    "name": "fraud",
    "task": "binary",
    "description": "card-fraud classifier (demo)",
    "scores": True,
    "features": [
        {"name": "amount", "type": "numeric"},
        {"name": "account_age_days", "type": "numeric"},
        {"name": "hour", "type": "numeric"},
        {"name": "merchant", "type": "categorical"},
        {"name": "is_foreign", "type": "boolean"},
    ],
    "segments": ["country"],
}

ETA: dict[str, Any] = {
    "name": "delivery-eta",
    "task": "regression",
    "description": "delivery time in minutes (demo)",
    "features": [
        {"name": "distance_km", "type": "numeric"},
        {"name": "items", "type": "numeric"},
        {"name": "courier", "type": "categorical"},
    ],
}

MERCHANTS = np.array(["grocery", "travel", "electronics", "fuel", "online"])
COUNTRIES = np.array(["DE", "FR", "US", "BR"])
COURIERS = np.array(["bike", "car", "van"])


@dataclass(frozen=True)
class Batch:
    features: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    truth: np.ndarray
    champion: np.ndarray
    challenger: np.ndarray
    retrained: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def fraud_batch(rng: np.random.Generator, n: int, drift: float = 0.0) -> Batch:
    """Transactions. ``drift`` in [0, 1] is a fraud wave: bigger amounts, more foreign
    cards, more fraud (above all at travel merchants), and a champion that misses it.

    The retrained scorer shares the champion's noise (halved) and adds the wave's own
    term, so it draws nothing from ``rng``: the stream is the same with or without it."""
    amount = rng.lognormal(3.5 + 1.2 * drift, 1.0, n)
    age = rng.gamma(2.0, 300.0, n)
    hour = rng.integers(0, 24, n).astype(float)
    merchant = rng.choice(MERCHANTS, n, p=[0.35, 0.1, 0.15, 0.2, 0.2])
    foreign = rng.random(n) < 0.1 + 0.3 * drift
    country = rng.choice(COUNTRIES, n, p=[0.4, 0.3, 0.2, 0.1])
    logit = (
        -4.0 + 0.6 * np.log1p(amount) - 0.002 * age + 1.5 * foreign + 0.8 * (merchant == "online")
    )
    wave = drift * (1.5 * (merchant == "travel") + 0.5)
    truth = rng.random(n) < _sigmoid(logit + wave)
    noise = rng.normal(0, 0.6, n)
    champion = _sigmoid(logit + noise - 0.9 * drift * np.log1p(amount) / 5)
    challenger = _sigmoid(logit + rng.normal(0, 0.4, n) + 1.2 * drift * (merchant == "travel"))
    retrained = _sigmoid(logit + wave + 0.5 * noise)
    features = [
        {
            "amount": round(float(a), 2),
            "account_age_days": round(float(g), 1),
            "hour": float(h),
            "merchant": str(m),
            "is_foreign": bool(f),
        }
        for a, g, h, m, f in zip(amount, age, hour, merchant, foreign, strict=True)
    ]
    segments = [{"country": str(c)} for c in country]
    return Batch(features, segments, truth, champion, challenger, retrained)


def fraud_frame(batch: Batch, scores: np.ndarray) -> pl.DataFrame:
    """A fraud batch in the reference layout, scored by ``scores``."""
    return pl.DataFrame(batch.features).with_columns(
        prediction=pl.Series((scores >= 0.5).astype(int)),
        score=pl.Series(scores),
        target=pl.Series(batch.truth.astype(int)),
    )


def fraud_reference(seed: int, rows: int = 5000, wave_share: float = 0.2) -> pl.DataFrame:
    """The retrained model's reference: what it was trained on, the last hour of traffic
    with the fraud wave making up ``wave_share`` of it, scored by the retrained model."""
    rng = np.random.default_rng(seed)
    waves = int(rows * wave_share)
    parts = [fraud_batch(rng, rows - waves), fraud_batch(rng, waves, 1.0)]
    return pl.concat([fraud_frame(b, b.retrained) for b in parts if b.truth.size])


def eta_batch(rng: np.random.Generator, n: int) -> Batch:
    distance = rng.gamma(2.0, 2.5, n)
    items = rng.integers(1, 12, n).astype(float)
    courier = rng.choice(COURIERS, n)
    speed = np.select([courier == "bike", courier == "car"], [15.0, 25.0], 20.0)
    truth = 8 + 60 * distance / speed + 1.5 * items + rng.normal(0, 4, n)
    predicted = 9 + 58 * distance / speed + 1.4 * items
    features = [
        {"distance_km": round(float(d), 2), "items": float(i), "courier": str(c)}
        for d, i, c in zip(distance, items, courier, strict=True)
    ]
    return Batch(features, [{}] * n, truth, predicted, predicted, predicted)
