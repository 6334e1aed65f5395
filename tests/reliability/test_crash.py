"""Crash consistency: ``modelwatch serve`` and ``modelwatch worker`` SIGKILLed mid-work.

Ingest: client threads send predictions, labels and usage samples while the
server is SIGKILLed at seeded random moments and restarted on the same store;
like any client they resend every batch not acknowledged. At the end every
acknowledged item is stored, and every item once, however often it was sent.

Workers: see ``test_worker_killed_mid_evaluation_and_mid_delivery``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from tests.reliability.crash_helpers import Proc, query, server

pytestmark = pytest.mark.reliability

KILLS = 5
CLIENTS = 4
BATCH = 40
REQUESTS = 2400  # predictions; as many labels and usage samples
MODEL = {
    "name": "churn",
    "task": "binary",
    "features": [{"name": "age", "type": "numeric"}, {"name": "plan", "type": "categorical"}],
}


@dataclass
class Batch:
    path: str
    body: dict[str, Any]
    ids: list[str]
    sends: int = 0
    last_answer: str = ""


@dataclass
class Ledger:
    """What the clients were told: ids acknowledged, sends, and failed sends."""

    acked: Counter[tuple[str, str]] = field(default_factory=Counter)
    sends: int = 0
    failures: int = 0
    resent_after_ack: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _batches(rng: random.Random) -> list[Batch]:
    stamp = "2026-11-20T10:00:00Z"
    out: list[Batch] = []
    for start in range(0, REQUESTS, BATCH):
        ids = [f"r{i}" for i in range(start, start + BATCH)]
        events = [
            {"request_id": r, "timestamp": stamp, "features": {"age": 30.0, "plan": "a"}}
            | {"prediction": i % 2}
            for i, r in enumerate(ids)
        ]
        labels = [{"request_id": r, "label": 1, "timestamp": stamp} for r in ids]
        samples = [
            {"sample_id": f"s-{r}", "timestamp": stamp, "latency_ms": 12.5, "cpu_seconds": 0.01}
            for r in ids
        ]
        base = {"model": "churn", "version": "v1"}
        out.append(Batch("/v1/predictions", {**base, "events": events}, ids))
        out.append(Batch("/v1/ground-truth", {"model": "churn", "labels": labels}, ids))
        out.append(
            Batch("/v1/resource-usage", {**base, "samples": samples}, [f"s-{r}" for r in ids])
        )
    rng.shuffle(out)
    return out


class Clients:
    """Threads taking batches from a queue; a batch goes back on it until acknowledged.
    One in ten acknowledged batches is sent once more, as a client does that timed out
    just before the answer arrived. Until ``kills_done`` is set, a client that finds the
    queue empty resends a random batch, so that every kill lands among requests in
    flight however fast the server is."""

    def __init__(self, url: str, batches: list[Batch], seed: int) -> None:
        self.url = url
        self.todo = list(batches)
        self.ledger = Ledger()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.kills_done = threading.Event()
        self.batches = list(batches)
        self.in_flight = 0  # taken from the queue and not yet acknowledged or put back
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def remaining(self) -> int:
        """Batches not yet acknowledged, counting those a client holds (sending, or
        backing off before putting one back)."""
        with self.lock:
            return len(self.todo) + self.in_flight

    def unsent(self) -> str:
        """The batches still to send, with the last answer each got."""
        with self.lock:
            return "\n".join(
                f"{b.path} {b.ids[0]}..: {b.sends} sends, last {b.last_answer}" for b in self.todo
            )

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _take(self) -> Batch | None:
        with self.lock:
            if self.todo:
                self.in_flight += 1
                return self.todo.pop(self.rng.randrange(len(self.todo)))
            if self.kills_done.is_set():
                return None
            with self.ledger.lock:
                self.ledger.resent_after_ack += 1
            self.in_flight += 1
            return self.rng.choice(self.batches)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                batch = self._take()
                if batch is None:
                    time.sleep(0.05)
                    continue
                self._send(client, batch)

    def _send(self, client: httpx.Client, batch: Batch) -> None:
        batch.sends += 1
        try:
            answer = client.post(batch.path, json=batch.body)
            ok = answer.status_code == 200
            batch.last_answer = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            ok = False
            batch.last_answer = repr(exc)
        with self.ledger.lock:
            self.ledger.sends += 1
            if ok:
                for i in batch.ids:
                    self.ledger.acked[(batch.path, i)] += 1
            else:
                self.ledger.failures += 1
        if not ok:
            time.sleep(0.25)  # the server is down: back off a little, as the SDK does
        with self.lock:
            self.in_flight -= 1
            if not ok:
                self.todo.append(batch)
            elif self.rng.random() < 0.1 and batch.sends == 1:
                with self.ledger.lock:
                    self.ledger.resent_after_ack += 1
                self.todo.append(batch)


def _stored(store: Store) -> dict[str, Counter[str]]:
    layout = Registry(store).get_model("churn").layout
    tables = {
        "/v1/predictions": f"SELECT request_id FROM {layout.events.name}",
        "/v1/ground-truth": f"SELECT request_id FROM {layout.labels.name}",
        "/v1/resource-usage": "SELECT sample_id FROM usage_samples",
    }
    return {path: Counter(r for (r,) in query(store, sql)) for path, sql in tables.items()}


def _setup(api: str) -> None:
    assert httpx.post(f"{api}/v1/models", json=MODEL, timeout=30).status_code == 201
    version = {"version": "v1", "alias": "champion"}
    assert (
        httpx.post(f"{api}/v1/models/churn/versions", json=version, timeout=30).status_code == 201
    )


@pytest.mark.parametrize("seed", [11])
def test_ingest_survives_sigkill_with_every_ack_stored_once(
    store_url: str, tmp_path: Path, seed: int
) -> None:
    store = Store(store_url)
    upgrade(store)
    api = server(store_url, tmp_path, "--no-scheduler", "--no-migrate")
    api.start()
    _setup(api.url)
    rng = random.Random(seed)
    clients = Clients(api.url, _batches(rng), seed)
    clients.start()
    try:
        _kill_during_traffic(api, clients, rng)
        clients.kills_done.set()
        clients.join(timeout=120)
        assert clients.remaining() == 0, (
            f"clients could not send everything:\n{clients.unsent()}\n{api.tail()}"
        )
    finally:
        clients.stop.set()
        api.stop()
    _assert_stored_once(store, clients.ledger)
    store.dispose()


def _kill_during_traffic(api: Proc, clients: Clients, rng: random.Random) -> None:
    """KILLS SIGKILLs, each a random moment after the restarted server acknowledged
    something, so each lands among requests in flight."""
    for _ in range(KILLS):
        acked = clients.ledger.sends - clients.ledger.failures
        deadline = time.monotonic() + 30
        while clients.ledger.sends - clients.ledger.failures <= acked:
            assert time.monotonic() < deadline, "no batch acknowledged:\n" + api.tail()
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        api.kill()
        time.sleep(rng.uniform(0.0, 0.3))
        api.start()


def _assert_stored_once(store: Store, ledger: Ledger) -> None:
    stored = _stored(store)
    for path, counts in stored.items():
        twice = {i: n for i, n in counts.items() if n > 1}
        assert twice == {}, f"{path}: stored more than once: {sorted(twice)[:5]}"
        acked = {i for (p, i) in ledger.acked if p == path}
        lost = acked - set(counts)
        assert lost == set(), f"{path}: acknowledged but not stored: {sorted(lost)[:5]}"
        assert len(counts) == REQUESTS  # everything was eventually acknowledged
    resent = sum(n - 1 for n in ledger.acked.values())
    print(
        f"sends {ledger.sends}, failed {ledger.failures}, items acknowledged more than once "
        f"{resent} (batches resent after their ack: {ledger.resent_after_ack})"
    )
