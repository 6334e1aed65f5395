"""Plays deployed models: sends predictions, delayed labels and usage through the real SDK.

Seeded, so a run behaves the same each time: traffic is drawn in fixed slots of
:data:`SLOT_S` simulated seconds from a start aligned to the minute. At start it
replays ``history_s`` of past traffic (``speed`` times faster than real time; 0
means as fast as the service takes it) so that evaluations have closed windows
at once, then it sends live traffic in real time. ``drift_at`` seconds into the
live traffic it injects a drift into the fraud model's traffic for ``drift_for``
seconds: bigger amounts, more foreign cards, more fraud, a champion that misses it.

Labels arrive ``label_delay`` seconds after their predictions. Once the demo
pipeline has trained a new fraud version (:meth:`Simulator.serve_challenger`), it
scores the same requests as v1 and v2; when it is promoted
(:meth:`Simulator.promoted`) it serves the traffic and v1 keeps scoring in shadow.
"""

from __future__ import annotations

import heapq
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import numpy as np
import polars as pl

from collector.sdk import Client
from demo.config import MONITORS, POLICIES
from demo.models import ETA, FRAUD, eta_batch, fraud_batch, fraud_frame

__all__ = ["SLOT_S", "Simulator", "SimulatorStats"]

log = logging.getLogger(__name__)

SLOT_S = 5.0  # traffic is drawn per slot of simulated time: the same stream however paced
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
        speed: float = 0.0,
        rate: float = 2.0,
        history_s: float = 3600,
        start: float | None = None,
        drift_at: float | None = None,
        drift_for: float = 300.0,
        label_delay: float = LABEL_DELAY_S,
        say: Callable[[str], None] = print,
    ) -> None:
        """``start``: the first simulated second (default ``history_s`` ago, on the minute);
        ``drift_at``: seconds into the live traffic (:meth:`run`) the drift begins."""
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.rng = np.random.default_rng(seed)
        self.speed = speed
        self.rate = rate
        self.say = say
        self.client = Client(self.url, api_key)
        self.stats = SimulatorStats()
        self._labels: list[_PendingLabel] = []
        self.clock = start if start is not None else 60 * math.floor((time.time() - history_s) / 60)
        self.drift_at, self.drift_for = drift_at, drift_for
        self.drift_window: tuple[float, float] | None = None
        self._drifting = False
        self._seq = 0
        self.label_delay = label_delay
        # The retrained version's own randomness (its latency): the main stream stays the
        # same whenever the pipeline's callback lands.
        self._aux_rng = np.random.default_rng(seed + 1)
        self._lock = threading.Lock()
        self.retrained: str | None = None
        self.champion = "v1"
        # Request ids are unique per run: a rerun on the same store must not be duplicates.
        self._run = f"{int(time.time()):x}"

    def register(self, *, monitoring: bool = False) -> None:
        """The models (unless declared already), their versions and reference data; with
        ``monitoring``, the demo's monitors and alerting policies too (for a service
        without the demo's config). What is there already (409) is kept; an
        unexpected answer raises :class:`httpx.HTTPStatusError`."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            self._ensure_champion(http)
            for spec, versions in (
                (FRAUD, [("v1", "champion"), ("v2", "shadow")]),
                (ETA, [("v1", "champion")]),
            ):
                _created(http.post("/v1/models", json=spec))
                for version, alias in versions:
                    r = http.post(
                        f"/v1/models/{spec['name']}/versions",
                        json={"version": version, "alias": alias},
                    )
                    if _created(r):
                        self._upload_reference(http, spec["name"], version)
            self.say(
                "registered models: fraud (v1 champion, v2 shadow challenger), delivery-eta (v1)"
            )
            if monitoring:
                for path, items in (("/v1/monitors", MONITORS), ("/v1/policies", POLICIES)):
                    for item in items:
                        _created(http.post(path, json=item))

    def _ensure_champion(self, http: httpx.Client) -> None:
        """A store reused from an earlier run may have a promoted version as champion:
        the story starts from v1 again."""
        r = http.get(f"/v1/models/{FRAUD['name']}")
        if r.status_code != 200:
            return
        champion = next((v for v in r.json()["versions"] if v.get("alias") == "champion"), None)
        if champion is not None and champion["version"] != "v1":
            http.put(
                f"/v1/models/{FRAUD['name']}/aliases/champion", json={"version": "v1"}
            ).raise_for_status()
            self.say(f"(an earlier run promoted fraud {champion['version']}: v1 is champion again)")

    def serve_challenger(self, version: str) -> None:
        """The retrained fraud ``version`` (registered already) scores every request too."""
        with self._lock:
            self.retrained = version
        self.say(
            f"[{_iso(self.clock)[:19]}] simulator: fraud {version} (challenger) now scores "
            "the same requests as v1; modelwatch compares it with the champion"
        )

    def promoted(self, version: str, previous: str | None) -> None:
        """``version`` is the champion now: it serves, the old champion stays in shadow."""
        with self._lock:
            self.champion = version
        self.say(
            f"[{_iso(self.clock)[:19]}] simulator: fraud {version} is live as the champion; "
            f"{previous or 'the old champion'} keeps scoring the same requests, for comparison"
        )

    def _upload_reference(self, http: httpx.Client, model: str, version: str) -> None:
        rng = np.random.default_rng(1000 + len(version))
        if model == FRAUD["name"]:
            batch = fraud_batch(rng, 5000)
            frame = fraud_frame(batch, batch.champion if version == "v1" else batch.challenger)
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
    def inject_drift(self, start: float, seconds: float) -> None:
        """Drift the fraud traffic from simulated time ``start`` for ``seconds``."""
        self.drift_window = (start, start + seconds)

    def advance(self, until: float) -> None:
        """Send the traffic of every whole slot that ends by simulated time ``until``."""
        while self.clock + SLOT_S <= until + 1e-9:
            self._slot()

    def _slot(self) -> None:
        start = self.clock
        drifting = self.drift_window is not None and (
            self.drift_window[0] <= start < self.drift_window[1]
        )
        if drifting != self._drifting:
            self._drifting = drifting
            self.say(
                f"[{_iso(start)[:19]}] drift injected into fraud traffic: bigger amounts, "
                "4x the foreign cards, more fraud; the champion misses it"
                if drifting
                else f"[{_iso(start)[:19]}] drift stopped: fraud traffic is back to normal"
            )
        n = int(self.rng.poisson(self.rate * SLOT_S))
        if n:
            stamps = np.sort(start + SLOT_S * self.rng.random(n))
            self._fraud(stamps, 1.0 if drifting else 0.0)
            self._eta(stamps[::2])
        self.clock = start + SLOT_S
        self._due_labels(self.clock)

    def backfill(self, step_s: float = 300.0) -> None:
        """Replay the history up to now, flushing each step so nothing is dropped."""
        began, first = time.monotonic(), self.clock
        while (behind := time.time() - self.clock) >= SLOT_S:
            self.advance(self.clock + min(step_s, behind))
            self.client.flush()
            if self.speed > 0:
                lag = (self.clock - first) / self.speed - (time.monotonic() - began)
                time.sleep(max(0.0, lag))
        s = self.stats
        self.say(
            f"replayed {(self.clock - first) / 3600:.1f}h of history in "
            f"{time.monotonic() - began:.1f}s: {s.predictions} predictions, {s.labels} labels"
        )

    def _ids(self, prefix: str, n: int) -> list[str]:
        start = self._seq
        self._seq += n
        return [f"{prefix}-{self._run}-{i:09d}" for i in range(start, start + n)]

    def _fraud(self, stamps: np.ndarray, drift: float) -> None:
        n = len(stamps)
        with self.client.measure("fraud", "v1"):
            batch = fraud_batch(self.rng, n, drift)
        ids = self._ids("tx", n)
        times = [_iso(t) for t in stamps]  # once per event, not once per version and use
        with self._lock:
            retrained = self.retrained
        versions = [("v1", batch.champion), ("v2", batch.challenger)]
        if retrained is not None:
            versions.append((retrained, batch.retrained))
        for version, scores in versions:
            for i, rid in enumerate(ids):
                self.client.log_prediction(
                    "fraud",
                    version,
                    rid,
                    batch.features[i],
                    int(scores[i] >= 0.5),
                    score=float(scores[i]),
                    segment=batch.segments[i],
                    timestamp=times[i],
                )
            if version == retrained:  # as cheap as v1; its own generator keeps the stream
                cpu, latency = 0.005, self._aux_rng.lognormal(np.log(9), 0.3, n)
            else:  # the shadow challenger costs three times as much
                cpu = 0.004 if version == "v1" else 0.012
                latency = self.rng.lognormal(np.log(8 if version == "v1" else 21), 0.3, n)
            for i in range(n):
                self.client.log_usage(
                    "fraud",
                    version,
                    latency_ms=float(latency[i]),
                    cpu_seconds=cpu,
                    memory_mb=512.0,
                    timestamp=times[i],
                )
        self.stats.predictions += len(versions) * n
        self.stats.usage += len(versions) * n + 1
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
                    self._labels, _PendingLabel(float(ts) + self.label_delay, model, rid, label)
                )

    def _due_labels(self, now: float) -> None:
        while self._labels and self._labels[0].due <= now:
            item = heapq.heappop(self._labels)
            self.client.log_label(item.model, item.request_id, item.label, timestamp=_iso(item.due))
            self.stats.labels += 1

    def run(
        self, duration: float | None = None, tick: float = 0.5, narrate_every: float = 30.0
    ) -> None:
        """Live traffic in real time until ``duration`` seconds pass (None: forever)."""
        started = last_said = time.monotonic()
        if self.drift_at is not None:
            self.inject_drift(self.clock + self.drift_at, self.drift_for)
        while duration is None or time.monotonic() - started < duration:
            time.sleep(tick)
            self.advance(time.time())
            if time.monotonic() - last_said >= narrate_every:
                last_said = time.monotonic()
                s = self.stats
                self.say(
                    f"[{_iso(self.clock)[:19]}] sent {s.predictions} predictions, "
                    f"{s.labels} labels, {s.usage} usage samples"
                )

    def close(self) -> None:
        self.client.close()


def _created(r: httpx.Response) -> bool:
    """True for 201 Created; False for 409 (there already) or another success; raises
    :class:`httpx.HTTPStatusError` for any other answer."""
    if r.status_code not in (201, 409):
        r.raise_for_status()
    return r.status_code == 201


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
