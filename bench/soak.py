"""Soak: ``modelwatch serve`` under steady mixed load for minutes; latency, errors, memory.

    .venv/bin/python -m bench.soak                          # 10 minutes, SQLite, 5k items/s
    .venv/bin/python -m bench.soak --minutes 1 --rate 5000 --store postgresql
    .venv/bin/python -m bench.soak --overload --minutes 1   # backpressure: many big batches

One ``serve`` process (API and scheduler) with a monitor on one-minute windows
evaluated every 10 s. Client threads send prediction batches at a fixed rate,
then the labels of half of them and a usage sample per batch; ``/metrics`` is
scraped every 5 s. Every request is timed; any answer but 200 is an error.
The server's RSS is sampled every 10 s. ``--overload`` instead lets many
clients send big batches as fast as the store takes them, to see what memory
does when the store cannot keep up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bench.common import (
    CATEGORICAL,
    NUMERIC,
    cpu_busy_seconds,
    exit_cleanly_on_sigterm,
    machine,
    markdown_table,
    pg_url,
    sqlite_url,
    wait_quiet,
)
from tests.conftest import free_port

RSS_EVERY_S = 10.0
SCRAPE_EVERY_S = 5.0


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    items: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, status: str, items: int) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            self.statuses[f"{kind} {status}"] += 1
            if status == "200":
                self.items += items

    def errors(self) -> int:
        return sum(n for k, n in self.statuses.items() if not k.endswith(" 200"))


def _config(path: Path) -> None:
    features = [{"name": n, "type": "numeric"} for n in NUMERIC]
    features += [{"name": n, "type": "categorical"} for n in CATEGORICAL]
    config = {
        "models": [{"name": "soak", "task": "binary", "features": features}],
        "monitors": [
            {
                "name": "soak-minutely",
                "model": "soak",
                "window": "1m",
                "schedule": "10s",
                "label_delay": "1m",
                "backfill": "5m",
                "min_samples": 20,
                "checks": ["accuracy"],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))


@contextlib.contextmanager
def _service(url: str, config: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ, MODELWATCH_DATABASE_URL=url, MODELWATCH_LOG_LEVEL="WARNING")
    cmd = [sys.executable, "-m", "modelwatch.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--config", str(config)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {cmd}")
            time.sleep(0.2)
        r = httpx.post(
            f"{base}/v1/models/soak/versions", json={"version": "v1", "alias": "champion"}
        )
        r.raise_for_status()
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _event(rid: str, stamp: str, i: int) -> dict[str, Any]:
    features: dict[str, Any] = {n: float((i * 7 + k) % 100) for k, n in enumerate(NUMERIC)}
    features.update({n: f"c{(i + k) % 5}" for k, n in enumerate(CATEGORICAL)})
    return {"request_id": rid, "timestamp": stamp, "features": features, "prediction": i % 2}


def _bodies(thread: int, seq: int, batch: int) -> list[tuple[str, str, bytes, int]]:
    """One prediction batch, the labels of half of it, one usage sample: (kind, path, body, n)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ids = [f"t{thread}-{seq}-{i}" for i in range(batch)]
    events = [_event(rid, stamp, i) for i, rid in enumerate(ids)]
    labels = [{"request_id": rid, "label": 1, "timestamp": stamp} for rid in ids[::2]]
    usage = [{"sample_id": f"u{thread}-{seq}", "timestamp": stamp, "latency_ms": 12.0}]
    base = {"model": "soak", "version": "v1"}
    return [
        ("predictions", "/v1/predictions", orjson.dumps({**base, "events": events}), len(ids)),
        (
            "labels",
            "/v1/ground-truth",
            orjson.dumps({"model": "soak", "labels": labels}),
            len(labels),
        ),
        ("usage", "/v1/resource-usage", orjson.dumps({**base, "samples": usage}), 1),
    ]


def _client(
    base: str, thread: int, every_s: float, batch: int, stop: threading.Event, tally: Tally
) -> None:
    headers = {"content-type": "application/json"}
    next_at, seq = time.monotonic(), 0
    with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
        while not stop.is_set():
            for kind, path, body, n in _bodies(thread, seq, batch):
                started = time.perf_counter()
                retry_after = 0.0
                try:
                    response = http.post(path, content=body)
                    status = str(response.status_code)
                    if response.status_code == 503:  # as the SDK does: wait before sending more
                        retry_after = float(response.headers.get("retry-after", "1"))
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                tally.add(kind, time.perf_counter() - started, status, n)
                stop.wait(retry_after)
            seq += 1
            next_at += every_s
            stop.wait(max(0.0, next_at - time.monotonic()))


def _scraper(base: str, stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        while not stop.wait(SCRAPE_EVERY_S):
            started = time.perf_counter()
            try:
                status = str(http.get("/metrics").status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            tally.add("metrics", time.perf_counter() - started, status, 0)


def _runs_done(base: str) -> int:
    """Runs done in the store (``modelwatch_evaluation_runs{status="done"}`` summed over
    monitors); a series missing from ``/metrics`` is an error, never a silent 0."""
    text = httpx.get(f"{base}/metrics", timeout=60).text
    done = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelwatch_evaluation_runs{") and 'status="done"' in line
    ]
    if not done:
        raise RuntimeError('/metrics has no modelwatch_evaluation_runs{status="done"} series')
    return int(sum(done))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    ts = [t / 60 for t, _ in samples]
    return statistics.linear_regression(ts, [m for _, m in samples]).slope


def soak(url: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "soak.yaml"
        _config(config)
        with _service(url, config) as (base, pid):
            return _drive(base, pid, args)


def _drive(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    tally, stop = Tally(), threading.Event()
    per_batch = args.batch + args.batch // 2 + 1
    every_s = args.clients * per_batch / args.rate if not args.overload else 0.0
    threads = [
        threading.Thread(target=_client, args=(base, i, every_s, args.batch, stop, tally))
        for i in range(args.clients)
    ]
    threads.append(threading.Thread(target=_scraper, args=(base, stop, tally)))
    runs_before = _runs_done(base)
    busy_before, started = cpu_busy_seconds(), time.monotonic()
    for t in threads:
        t.start()
    rss: list[tuple[float, float]] = [(0.0, rss_mb(pid))]
    deadline = started + args.minutes * 60
    while time.monotonic() < deadline:
        time.sleep(min(RSS_EVERY_S, max(0.0, deadline - time.monotonic())))
        rss.append((time.monotonic() - started, rss_mb(pid)))
        print(f"{rss[-1][0]:6.0f} s  RSS {rss[-1][1]:7.1f} MB  items {tally.items}", flush=True)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    load = (cpu_busy_seconds() - busy_before) / elapsed / (os.cpu_count() or 1)
    return {
        "tally": tally,
        "rss": rss,
        "elapsed": elapsed,
        "load": load,
        "runs": _runs_done(base) - runs_before,
    }


def report(store: str, args: argparse.Namespace, out: dict[str, Any]) -> str:
    tally: Tally = out["tally"]
    rows = [
        [
            kind,
            len(v),
            f"{_percentile(v, 0.5) * 1000:.1f}",
            f"{_percentile(v, 0.99) * 1000:.1f}",
            f"{max(v) * 1000:.0f}",
        ]
        for kind, v in sorted(tally.latencies.items())
    ]
    mbs = [m for _, m in out["rss"]]
    lines = [
        f"store {store}, {args.clients} clients, batch {args.batch}, "
        f"{'overload' if args.overload else f'target {args.rate} items/s'}, "
        f"{out['elapsed']:.0f} s; {machine()}",
        f"achieved {tally.items / out['elapsed']:.0f} items/s; errors {tally.errors()}; "
        f"evaluation runs done {out['runs']}; machine load {out['load'] * 100:.0f} % of all cores",
        f"server RSS MB: first {mbs[0]:.0f}, last {mbs[-1]:.0f}, max {max(mbs):.0f}, "
        f"slope {_slope_mb_per_min(out['rss']):+.2f} MB/min",
        "",
        markdown_table(["request", "count", "p50 ms", "p99 ms", "max ms"], rows),
        "",
        "statuses: " + ", ".join(f"{k}: {n}" for k, n in sorted(tally.statuses.items())),
    ]
    return "\n".join(lines)


def main() -> None:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=5_000, help="items/s, all kinds together")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="predictions per batch")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--overload", action="store_true", help="clients send as fast as answered (no pacing)"
    )
    args = parser.parse_args()
    print(f"machine load before: {wait_quiet(30) * 100:.0f} %", flush=True)
    urls = sqlite_url() if args.store == "sqlite" else pg_url()
    with urls as url:
        print(report(args.store, args, soak(url, args)))


if __name__ == "__main__":
    main()
