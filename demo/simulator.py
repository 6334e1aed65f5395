"""Plays deployed models: sends predictions, delayed labels and usage through the real SDK.

Seeded, so a run behaves the same each time. Time is simulated: ``speed``
simulated seconds pass per real second, starting now.
"""

from __future__ import annotations

import heapq
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import numpy as np
import polars as pl

from collector.sdk import Client
from demo.models import ETA, FRAUD, eta_batch, fraud_batch

__all__ = ["Simulator", "SimulatorStats"]

log = logging.getLogger(__name__)

LABEL_DELAY_S = 30.0
LABEL_SHARE = 0.9


@dataclass
class SimulatorStats:
    predictions: int = 0
    labels: int = 0
    usage: int = 0


@dataclass(order=True)
class _PendingLabel:
    due: float
    model: str = field(compare=False)
    request_id: str = field(compare=False)
    label: object = field(compare=False)


class Simulator:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        seed: int = 7,
        speed: float = 1.0,
        rate: float = 20.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.rng = np.random.default_rng(seed)
        self.speed = speed
        self.rate = rate
        self.say = say
        self.client = Client(self.url, api_key)
        self.stats = SimulatorStats()
        self._labels: list[_PendingLabel] = []
        self._start_real = time.monotonic()
        self._start_sim = time.time()
        self._seq = 0

    def now(self) -> float:
        return self._start_sim + (time.monotonic() - self._start_real) * self.speed

    # --- set-up through the REST API -----------------------------------------
    def register(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            for spec, versions in (
                (FRAUD, [("v1", "champion"), ("v2", "shadow")]),
                (ETA, [("v1", "champion")]),
            ):
                r = http.post("/v1/models", json=spec)
                if r.status_code not in (201, 409):
                    r.raise_for_status()
                for version, alias in versions:
                    r = http.post(
                        f"/v1/models/{spec['name']}/versions",
                        json={"version": version, "alias": alias},
                    )
                    if r.status_code == 201:
                        self._upload_reference(http, spec["name"], version)
                    elif r.status_code != 409:
                        r.raise_for_status()
        self.say("registered models: fraud (v1 champion, v2 shadow challenger), delivery-eta (v1)")

    def _upload_reference(self, http: httpx.Client, model: str, version: str) -> None:
        rng = np.random.default_rng(1000 + len(version))
        if model == FRAUD["name"]:
            batch = fraud_batch(rng, 5000)
            scores = batch.champion if version == "v1" else batch.challenger
            frame = pl.DataFrame(batch.features).with_columns(
                prediction=pl.Series((scores >= 0.5).astype(int)),
                score=pl.Series(scores),
                target=pl.Series(batch.truth.astype(int)),
            )
        else:
            batch = eta_batch(rng, 5000)
            frame = pl.DataFrame(batch.features).with_columns(
                prediction=pl.Series(batch.champion), target=pl.Series(batch.truth)
            )
        buf = io.BytesIO()
        frame.write_parquet(buf)
        http.post(
            f"/v1/models/{model}/versions/{version}/reference", content=buf.getvalue()
        ).raise_for_status()

    # --- traffic -------------------------------------------------------------
    def step(self, real_seconds: float) -> None:
        """Send the traffic of ``real_seconds`` of simulated time ending now."""
        end = self.now()
        span = real_seconds * self.speed
        n = max(1, int(self.rng.poisson(self.rate * real_seconds)))
        stamps = np.sort(end - span * self.rng.random(n))
        self._fraud(stamps)
        self._eta(stamps[: max(1, n // 2)])
        self._due_labels(end)

    def _ids(self, prefix: str, n: int) -> list[str]:
        start = self._seq
        self._seq += n
        return [f"{prefix}-{i:09d}" for i in range(start, start + n)]

    def _fraud(self, stamps: np.ndarray) -> None:
        n = len(stamps)
        with self.client.measure("fraud", "v1"):
            batch = fraud_batch(self.rng, n)
        ids = self._ids("tx", n)
        for version, scores in (("v1", batch.champion), ("v2", batch.challenger)):
            for i, rid in enumerate(ids):
                ts = _iso(stamps[i])
                self.client.log_prediction(
                    "fraud",
                    version,
                    rid,
                    batch.features[i],
                    int(scores[i] >= 0.5),
                    score=float(scores[i]),
                    segment=batch.segments[i],
                    timestamp=ts,
                )
            cpu = 0.004 if version == "v1" else 0.012  # the challenger costs three times as much
            latency = self.rng.lognormal(np.log(8 if version == "v1" else 21), 0.3, n)
            for i in range(n):
                self.client.log_usage(
                    "fraud",
                    version,
                    latency_ms=float(latency[i]),
                    cpu_seconds=cpu,
                    memory_mb=512.0,
                    timestamp=_iso(stamps[i]),
                )
        self.stats.predictions += 2 * n
        self.stats.usage += 2 * n + 1
        self._queue_labels("fraud", ids, stamps, [int(t) for t in batch.truth])

    def _eta(self, stamps: np.ndarray) -> None:
        batch = eta_batch(self.rng, len(stamps))
        ids = self._ids("order", len(stamps))
        for i, rid in enumerate(ids):
            self.client.log_prediction(
                "delivery-eta",
                "v1",
                rid,
                batch.features[i],
                round(float(batch.champion[i]), 2),
                timestamp=_iso(stamps[i]),
            )
        self.stats.predictions += len(ids)
        self._queue_labels("delivery-eta", ids, stamps, [round(float(t), 2) for t in batch.truth])

    def _queue_labels(
        self, model: str, ids: list[str], stamps: np.ndarray, labels: list[object]
    ) -> None:
        keep = self.rng.random(len(ids)) < LABEL_SHARE
        for rid, ts, label, k in zip(ids, stamps, labels, keep, strict=True):
            if k:
                heapq.heappush(
                    self._labels, _PendingLabel(float(ts) + LABEL_DELAY_S, model, rid, label)
                )

    def _due_labels(self, now: float) -> None:
        while self._labels and self._labels[0].due <= now:
            item = heapq.heappop(self._labels)
            self.client.log_label(item.model, item.request_id, item.label, timestamp=_iso(item.due))
            self.stats.labels += 1

    def run(
        self, duration: float | None = None, tick: float = 0.5, narrate_every: float = 10.0
    ) -> None:
        started = last_said = time.monotonic()
        while duration is None or time.monotonic() - started < duration:
            time.sleep(tick)
            self.step(tick)
            if time.monotonic() - last_said >= narrate_every:
                last_said = time.monotonic()
                s = self.stats
                self.say(
                    f"[{_iso(self.now())[:19]}] sent {s.predictions} predictions, "
                    f"{s.labels} labels, {s.usage} usage samples"
                )

    def close(self) -> None:
        self.client.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
