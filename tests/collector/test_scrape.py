"""Prometheus scrape targets: a model server's /metrics becomes usage samples."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.scrape import Scraper
from modelwatch.app import create_app
from modelwatch.collectors import ScrapeTarget
from modelwatch.config import Config, load_config
from modelwatch.errors import ConfigError
from modelwatch.settings import Settings
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from tests.conftest import CHURN_SPEC

MIB = 1024 * 1024
T0 = 1_795_168_800.0  # 2026-11-20T10:00:00Z


def exposition(cpu: float, latency_sum: float, latency_count: int, memory_mib: float) -> str:
    """A server hosting two models; the target selects churn's series by label."""
    return f"""# HELP model_cpu_seconds_total CPU time spent per model.
# TYPE model_cpu_seconds_total counter
model_cpu_seconds_total{{model="churn"}} {cpu}
model_cpu_seconds_total{{model="fraud"}} {cpu * 7}
# TYPE model_resident_memory_bytes gauge
model_resident_memory_bytes{{model="churn"}} {memory_mib * MIB}
model_resident_memory_bytes{{model="fraud"}} {memory_mib * MIB * 3}
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{{model="churn",le="0.5"}} {latency_count}
request_duration_seconds_bucket{{model="churn",le="+Inf"}} {latency_count}
request_duration_seconds_sum{{model="churn"}} {latency_sum}
request_duration_seconds_count{{model="churn"}} {latency_count}
request_duration_seconds_bucket{{model="fraud",le="+Inf"}} {latency_count * 10}
request_duration_seconds_sum{{model="fraud"}} {latency_sum * 100}
request_duration_seconds_count{{model="fraud"}} {latency_count * 10}
"""


class _Exposition(BaseHTTPRequestHandler):
    body = ""

    def do_GET(self) -> None:
        data = type(self).body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_server() -> Iterator[tuple[str, type[_Exposition]]]:
    handler = type("Handler", (_Exposition,), {"body": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metrics", handler
    server.shutdown()
    server.server_close()


TARGET: dict[str, Any] = {
    "model": "churn",
    "version": "v1",
    "interval": "15s",
    "labels": {"model": "churn"},
    "metrics": {
        "model_cpu_seconds_total": "cpu_seconds",
        "model_resident_memory_bytes": "memory_mb",
        "request_duration_seconds": "latency_ms",
    },
}


def _stored(store: Store) -> list[dict[str, Any]]:
    u = t.usage_samples
    query = select(u.c.ts_us, u.c.latency_ms, u.c.cpu_seconds, u.c.memory_mb, u.c.sample_id)
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(u.c.ts_us))]


def test_scrapes_store_per_interval_deltas(
    store: Store, model_server: tuple[str, type[_Exposition]]
) -> None:
    url, handler = model_server
    config = Config.model_validate({"models": [CHURN_SPEC], "scrape": [{**TARGET, "url": url}]})
    app = create_app(Settings(database_url=store.url), store, config)
    with TestClient(app) as client:
        assert client.post("/v1/models/churn/versions", json={"version": "v1"}).status_code == 201
        scraper: Scraper = app.state.scraper
        now = [T0]
        scraper.clock = lambda: now[0]
        assert [job_id for _, _, job_id in scraper.jobs()] == ["scrape:0"]
        assert scraper.jobs()[0][1] == 15.0

        handler.body = exposition(cpu=10.0, latency_sum=2.0, latency_count=10, memory_mib=100)
        assert scraper.scrape(0)
        now[0] += 15
        handler.body = exposition(cpu=12.5, latency_sum=2.9, latency_count=13, memory_mib=120)
        assert scraper.scrape(0)
        now[0] += 15
        handler.body = exposition(cpu=1.0, latency_sum=2.9, latency_count=13, memory_mib=90)
        assert scraper.scrape(0)  # the server restarted: its counter starts again

    rows = _stored(store)
    assert len(rows) == 3
    # First scrape: counters and histograms only set their baseline.
    assert rows[0]["cpu_seconds"] is None and rows[0]["latency_ms"] is None
    assert rows[0]["memory_mb"] == pytest.approx(100)
    # Second: increases since the first, of churn's series only (the label matcher).
    assert rows[1]["cpu_seconds"] == pytest.approx(2.5)
    assert rows[1]["latency_ms"] == pytest.approx(0.9 / 3 * 1000)
    assert rows[1]["memory_mb"] == pytest.approx(120)
    assert rows[1]["ts_us"] == int((T0 + 15) * 1_000_000)
    # Third: a counter reset counts from zero; no new requests, no latency.
    assert rows[2]["cpu_seconds"] == pytest.approx(1.0)
    assert rows[2]["latency_ms"] is None
    assert len({r["sample_id"] for r in rows}) == 3


def _mock(bodies: list[httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: bodies.pop(0))


def test_two_scrapers_in_one_interval_store_one_sample(churn: TestClient, store: Store) -> None:
    target = ScrapeTarget.model_validate({**TARGET, "url": "http://model:9000/metrics"})
    body = exposition(cpu=1, latency_sum=1, latency_count=1, memory_mib=50)
    for offset in (0.0, 4.0):  # e.g. two API replicas, a few seconds apart
        transport = _mock([httpx.Response(200, text=body)])
        scraper = Scraper(
            [target], churn.app.state.ingestor, transport=transport, clock=lambda o=offset: T0 + o
        )
        assert scraper.scrape(0)
    assert len(_stored(store)) == 1


def test_failures_are_logged_and_counted_never_raised(
    churn: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    good = exposition(cpu=1, latency_sum=1, latency_count=1, memory_mib=50)
    targets = [
        ScrapeTarget.model_validate({**TARGET, "url": "http://model:9000/metrics"}),
        ScrapeTarget.model_validate({**TARGET, "url": "http://x/metrics", "model": "nosuch"}),
    ]

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == "x":
            return httpx.Response(200, text=good)
        raise httpx.ConnectError("connection refused", request=request)

    scraper = Scraper(targets, churn.app.state.ingestor, transport=httpx.MockTransport(respond))
    assert scraper.scrape(0) is False
    assert scraper.scrape(1) is False
    assert [s.failures for s in scraper.states] == [1, 1]
    assert "ConnectError" in (scraper.states[0].last_error or "")
    assert "nosuch" in (scraper.states[1].last_error or "")
    assert "http://model:9000/metrics" in caplog.text
    bad_status = Scraper(
        targets[:1], churn.app.state.ingestor, transport=_mock([httpx.Response(503)])
    )
    assert bad_status.scrape(0) is False
    unparsable = Scraper(
        targets[:1], churn.app.state.ingestor, transport=_mock([httpx.Response(200, text="{{{")])
    )
    assert unparsable.scrape(0) is False
    assert _stored(store) == []


def test_a_response_over_the_size_limit_is_a_failure(
    churn: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collector.scrape.MAX_RESPONSE_BYTES", 100)
    target = ScrapeTarget.model_validate({**TARGET, "url": "http://model:9000/metrics"})
    body = exposition(cpu=1, latency_sum=1, latency_count=1, memory_mib=50)
    assert len(body.encode()) > 100
    scraper = Scraper(
        [target], churn.app.state.ingestor, transport=_mock([httpx.Response(200, text=body)])
    )
    assert scraper.scrape(0) is False
    assert scraper.states[0].failures == 1
    assert "too large" in (scraper.states[0].last_error or "")
    assert _stored(store) == []


def test_scrape_config_errors_name_the_key(tmp_path: Any) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(
        "scrape:\n  - {url: 'http://m/metrics', model: churn, version: v1, interval: soon,"
        " metrics: {process_cpu_seconds_total: cpu_seconds}}\n"
    )
    with pytest.raises(ConfigError, match=r"scrape\[0\]\.interval.*'soon'"):
        load_config(path)
    path.write_text("scrape:\n  - {url: 'ftp://m', model: churn, version: v1, metrics: {}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "scrape[0].url" in str(err.value) and "scrape[0].metrics" in str(err.value)
    path.write_text(
        "scrape:\n  - {url: 'http://m/metrics', model: churn, version: v1,"
        " metrics: {process_cpu_seconds_total: cpu_seconds}}\n"
    )
    assert load_config(path).scrape[0].interval == 15
