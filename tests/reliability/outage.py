"""What the outage tests share: ``modelwatch serve`` on a store, ingest traffic that
records every answer and its latency, and counting what the store holds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import CHURN_SPEC, churn_event, free_port


@contextmanager
def serve(database_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``modelwatch serve`` on a free loopback port with the churn model registered;
    yields its base URL and stops it afterwards."""
    port = free_port()
    full_env = {**os.environ, "MODELWATCH_DATABASE_URL": database_url, **(env or {})}
    command = [sys.executable, "-m", "modelwatch.cli", "serve", "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.post("/v1/models", json=CHURN_SPEC).status_code == 201
            version = {"version": "v1", "alias": "champion"}
            assert client.post("/v1/models/churn/versions", json=version).status_code == 201
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "modelwatch serve exited"
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("modelwatch serve did not become ready")


@dataclass
class Outcome:
    batch: int
    status: int | None  # None: no answer within the client's timeout, or no connection
    latency_s: float
    retry_after: str | None
    phase: str


@dataclass
class Traffic:
    """Threads posting prediction batches of unique request ids; every answer is kept."""

    base: str
    batch_size: int = 20
    threads: int = 4
    pause_s: float = 0.05
    client_timeout_s: float = 60.0
    phase: str = "before"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    _workers: list[threading.Thread] = field(default_factory=list)

    def body(self, batch: int) -> dict[str, Any]:
        start = batch * self.batch_size
        events = [
            churn_event(i, request_id=f"b{batch}-{i}")
            for i in range(start, start + self.batch_size)
        ]
        return {"model": "churn", "version": "v1", "events": events}

    def start(self) -> None:
        for _ in range(self.threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=self.client_timeout_s + 10)

    @property
    def batches(self) -> int:
        return self._next

    def _take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=self.client_timeout_s) as client:
            while not self._stop.is_set():
                outcome = post(client, self._take(), self, self.phase)
                with self._lock:
                    self.outcomes.append(outcome)
                time.sleep(self.pause_s)


def post(client: httpx.Client, batch: int, traffic: Traffic, phase: str) -> Outcome:
    started = time.monotonic()
    try:
        r = client.post("/v1/predictions", json=traffic.body(batch))
    except httpx.HTTPError:
        return Outcome(batch, None, time.monotonic() - started, None, phase)
    return Outcome(
        batch, r.status_code, time.monotonic() - started, r.headers.get("retry-after"), phase
    )


def resend_until_stored(traffic: Traffic, batches: set[int], within_s: float) -> set[int]:
    """Send ``batches`` again until each is acknowledged; the ones still not stored."""
    left, deadline = set(batches), time.monotonic() + within_s
    with httpx.Client(base_url=traffic.base, timeout=30) as client:
        while left and time.monotonic() < deadline:
            for batch in sorted(left):
                if post(client, batch, traffic, "resend").status in (200, 201, 202):
                    left.discard(batch)
            if left:
                time.sleep(1)
    return left


def count_events(database_url: str) -> tuple[int, int]:
    """Stored events of the first model, and how many distinct request ids they hold."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM mw_m1_events"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
