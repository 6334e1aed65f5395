"""A network partition between the service and PostgreSQL: the socket stays open and
nothing comes back. Requests fail fast with 503 and Retry-After instead of hanging,
/readyz keeps answering within 2 s, and once the link is back the service recovers by
itself; a client that resends what was refused ends with every event stored once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.outage import Traffic, count_events, resend_until_stored, serve
from tests.reliability.proxy import PartitionProxy

PARTITION_S = 30.0
TIMEOUTS = {
    "MODELWATCH_DB_CONNECT_TIMEOUT_S": "2",
    "MODELWATCH_DB_POOL_TIMEOUT_S": "2",
    "MODELWATCH_DB_STATEMENT_TIMEOUT_S": "5",
    "MODELWATCH_DB_LOCK_TIMEOUT_S": "2",
    "MODELWATCH_DB_DEAD_PEER_S": "5",
}
# The longest a request may wait: a pool slot, the pooled connection's check, a new
# connection, then the client's cut of a silent transaction (statement timeout + 2 s).
BOUND_S = 2 + 2 + 2 + 5 + 2 + 1.0


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, PartitionProxy]]:
    url = make_url(pg_url)
    with PartitionProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy


def _sample_readyz(base: str, stop: threading.Event, took: list[tuple[float, int | None]]) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status: int | None = client.get("/readyz").status_code
            except httpx.HTTPError:
                status = None
            took.append((time.monotonic() - started, status))
            stop.wait(1.0)


@pytest.mark.reliability
@pytest.mark.postgres
def test_ingest_through_a_partition_fails_fast_and_loses_nothing(
    pg_url: str, proxied: tuple[str, PartitionProxy], tmp_path: Path
) -> None:
    url, proxy = proxied
    with serve(url, tmp_path / "serve.log", TIMEOUTS) as base:
        traffic = Traffic(base)
        traffic.start()
        time.sleep(3)
        readyz: list[tuple[float, int | None]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_readyz, args=(base, stop, readyz))
        traffic.phase = "partition"
        proxy.partition()
        sampler.start()
        time.sleep(PARTITION_S)
        proxy.heal()
        stop.set()
        sampler.join(timeout=30)
        traffic.phase = "after"
        time.sleep(8)
        traffic.stop()

        outcomes = traffic.outcomes
        during = [o for o in outcomes if o.phase == "partition"]
        worst = max(o.latency_s for o in outcomes)
        print(
            f"\n{len(outcomes)} requests, {len(during)} during the partition "
            f"({sum(o.status == 503 for o in during)} 503s); max latency {worst:.2f}s; "
            f"/readyz max {max(t for t, _ in readyz):.2f}s over {len(readyz)} probes"
        )
        assert worst <= BOUND_S
        assert all(o.status in (200, 503) for o in outcomes), {o.status for o in outcomes}
        assert all(o.retry_after for o in outcomes if o.status == 503)
        assert any(o.status == 503 for o in during)
        assert all(t < 2.5 and status == 503 for t, status in readyz[:-1])
        after = [o for o in outcomes if o.phase == "after"]
        assert after and after[-1].status == 200, "the service did not recover by itself"
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200

        refused = {o.batch for o in outcomes if o.status != 200}
        assert resend_until_stored(traffic, refused, within_s=60) == set()
    expected = traffic.batches * traffic.batch_size
    assert count_events(pg_url) == (expected, expected)
