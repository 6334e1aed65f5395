"""``/metrics`` scrape latency on a long history, with and without serving slow sections
from their last read.

A store gets ``--events`` predictions (labels for half) of one model; then a writer
keeps adding ``--rate`` events/s in batches while the exporter is scraped every
``--every`` seconds for ``--scrapes`` scrapes, once with every section read on every
scrape (an unbounded inline budget: the behaviour before the section cache) and once
with the default budget. Prints scrape p50/p99/max and the age of the volume figures
served::

    .venv/bin/python -m bench.metrics_scrape --store sqlite --events 5000000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import polars as pl
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from bench.common import (
    feature_frame,
    machine,
    make_model,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
    storage_rows,
)
from dashboards.metrics import StoreCollector
from dashboards.metrics_cache import SectionCache
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout

START_US = 1_767_225_600_000_000
CHUNK = 100_000


def _write(store: Store, layout: ModelLayout, version_id: int, start: int, n: int) -> None:
    frame = feature_frame(n, seed=start).with_columns(
        pl.col("ts_us") + start * 1000,
        (pl.col("request_id") + f"-{start}").alias("request_id"),
    )
    labels = frame.select(
        "request_id", "prediction", "ts_us", pl.col("ts_us").alias("received_us")
    ).rows()[::2]
    with store.write() as conn:
        insert_rows(
            conn, layout.events, layout.event_columns, storage_rows(frame, version_id, START_US)
        )
        insert_rows(conn, layout.labels, ["request_id", "label", "ts_us", "received_us"], labels)


def fill(store: Store, n: int) -> tuple[ModelLayout, int]:
    model, version = make_model(store)
    for start in range(0, n, CHUNK):
        _write(store, model.layout, version.id, start, min(CHUNK, n - start))
    return model.layout, version.id


def scrapes(store: Store, budget: float, args: argparse.Namespace, offset: int) -> dict[str, Any]:
    sections = SectionCache(inline_budget_s=budget)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, families={}, sections=sections))
    layout, version_id = args.layout, args.version_id
    stop = threading.Event()

    def writer() -> None:
        start = offset
        per_batch = max(1, args.rate // 10)
        while not stop.wait(0.1):
            _write(store, layout, version_id, start, per_batch)
            start += per_batch

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    latencies, ages = [], []
    try:
        for _ in range(args.scrapes):
            began = time.perf_counter()
            text = generate_latest(registry).decode()
            latencies.append(time.perf_counter() - began)
            ages.append(_volume_age(text))
            time.sleep(max(0.0, args.every - latencies[-1]))
    finally:
        stop.set()
        thread.join()
    ordered = sorted(latencies[1:])  # the first scrape has no earlier read to serve
    return {
        "first": latencies[0],
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max": ordered[-1],
        "age_max": max(ages),
    }


def _volume_age(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('modelwatch_metrics_section_age_seconds{section="volumes"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--rate", type=int, default=10_000, help="events/s written meanwhile")
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between scrapes")
    args = parser.parse_args()
    url_of = sqlite_url if args.store == "sqlite" else pg_url
    with url_of() as url:
        store = open_store(url)
        args.layout, args.version_id = fill(store, args.events)
        rows: list[list[str]] = []
        for label, budget in (
            ("every section on every scrape", float("inf")),
            ("default (1 s)", 1.0),
        ):
            out = scrapes(store, budget, args, offset=args.events + len(rows) * 10_000_000)
            rows.append(
                [
                    label,
                    f"{out['first']:.3f}",
                    f"{out['p50']:.3f}",
                    f"{out['p99']:.3f}",
                    f"{out['max']:.3f}",
                    f"{out['age_max']:.0f}",
                ]
            )
    print(machine())
    print(
        f"{args.store}, {args.events:,} events + {args.events // 2:,} labels, "
        f"{args.rate:,} events/s written during {args.scrapes} scrapes every {args.every} s"
    )
    print(
        markdown_table(
            [
                "sections",
                "first scrape s",
                "then p50 s",
                "p99 s",
                "max s",
                "oldest volumes served s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
