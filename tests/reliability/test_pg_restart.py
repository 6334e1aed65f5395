"""PostgreSQL stopped for a minute and started again, under SDK traffic: the service
answers fast 503s with Retry-After while it is down, recovers by itself once it is
back, and the SDK's retries end with every event stored exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from collector.sdk import Client
from tests.reliability.conftest import PrivatePostgres
from tests.reliability.outage import count_events, serve

OUTAGE_S = 60.0
RATE_PER_S = 100
TIMEOUTS = {"MODELWATCH_DB_CONNECT_TIMEOUT_S": "2", "MODELWATCH_DB_POOL_TIMEOUT_S": "2"}


def _produce(sdk: Client, stop: threading.Event, sent: list[int]) -> None:
    i = 0
    while not stop.is_set():
        features = {"age": 30.0 + i % 50, "plan": "pro", "active": True, "note": "hi"}
        sdk.log_prediction("churn", "v1", f"sdk-{i}", features, i % 2, score=0.5)
        i += 1
        sent[0] = i
        time.sleep(1 / RATE_PER_S)


def _probe(
    base: str, stop: threading.Event, seen: list[tuple[float, int | None, str | None]]
) -> None:
    """Direct requests during the outage: how fast, and what they are told."""
    body = {"model": "churn", "version": "v1", "events": []}
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = client.post(
                    "/v1/predictions", json={**body, "events": [_probe_event(len(seen))]}
                )
                seen.append(
                    (time.monotonic() - started, r.status_code, r.headers.get("retry-after"))
                )
            except httpx.HTTPError:
                seen.append((time.monotonic() - started, None, None))
            stop.wait(0.5)


def _probe_event(n: int) -> dict[str, object]:
    features = {"age": 1.0, "plan": "basic", "active": False, "note": "probe"}
    return {
        "request_id": f"probe-{n}",
        "timestamp": time.time(),
        "features": features,
        "prediction": 0,
    }


@pytest.mark.reliability
def test_a_minute_without_postgres_loses_no_sdk_event(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    db = private_postgres.url
    with serve(db, tmp_path / "serve.log", TIMEOUTS) as base:
        sdk = Client(base, flush_interval=0.2, batch_size=100, close_timeout=120)
        stop, sent = threading.Event(), [0]
        producer = threading.Thread(target=_produce, args=(sdk, stop, sent), daemon=True)
        producer.start()
        time.sleep(3)
        private_postgres.stop()
        stop_probe = threading.Event()
        seen: list[tuple[float, int | None, str | None]] = []
        prober = threading.Thread(target=_probe, args=(base, stop_probe, seen), daemon=True)
        prober.start()
        time.sleep(OUTAGE_S)
        stop_probe.set()
        prober.join(timeout=40)
        private_postgres.start()
        time.sleep(5)
        stop.set()
        producer.join(timeout=10)
        assert sdk.close(timeout=120), f"the SDK could not deliver everything: {sdk.dropped}"
        dropped = {k: v for k, v in sdk.dropped.items() if v}
        r = httpx.post(
            f"{base}/v1/predictions",
            json={"model": "churn", "version": "v1", "events": [_probe_event(10**6)]},
            timeout=10,
        )
    slowest = max(t for t, _, _ in seen)
    print(
        f"\n{sent[0]} events sent; {len(seen)} probes during the outage, "
        f"slowest {slowest:.2f}s; dropped {dropped}"
    )
    assert r.status_code == 200, "the service did not recover by itself"
    assert seen and all(status == 503 and retry for _, status, retry in seen), seen
    assert slowest < 5.0
    assert dropped == {}
    stored, distinct = count_events(db)
    probes_stored = 1  # only the probe sent after the restart was stored
    assert (stored, distinct) == (sent[0] + probes_stored, sent[0] + probes_stored)
