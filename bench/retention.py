"""Retention: rows deleted per second from the hot store, per store, and ingest beside it.

Loads ``--days`` days of ``--per-day`` events (25 features) with a label for every
other event, then applies a retention that expires all but the last two days,
with the scheduler's own code (:class:`lifecycle.retention.Retention`, batches of
``--batch`` rows, each its own transaction). Reports the rows deleted per second
and the longest single batch (how long a writer could wait on the lock).

    .venv/bin/python -m bench.retention [--days 10] [--per-day 50000] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import polars as pl

from bench.common import (
    START_US,
    exit_cleanly_on_sigterm,
    feature_frame,
    machine,
    make_model,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
    storage_rows,
    wait_quiet,
)
from lifecycle.retention import Retention
from modelwatch.retention import RetentionSpec
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry

DAY_US = 86_400 * 1_000_000
CHUNK = 50_000


def _load(store: Store, days: int, per_day: int) -> int:
    model, version = make_model(store)
    layout = model.layout
    rows = 0
    for day in range(days):
        for start in range(0, per_day, CHUNK):
            n = min(CHUNK, per_day - start)
            frame = feature_frame(n, seed=day * per_day + start).with_columns(
                pl.col("ts_us") + day * DAY_US + start * 1000
            )
            labels = frame.select(
                "request_id", "prediction", "ts_us", pl.col("ts_us").alias("received_us")
            ).rows()[::2]
            with store.write() as conn:
                insert_rows(
                    conn, layout.events, layout.event_columns, storage_rows(frame, version.id, 0)
                )
                insert_rows(
                    conn, layout.labels, ["request_id", "label", "ts_us", "received_us"], labels
                )
            rows += n + len(labels)
    return rows


def _measure(url: str, days: int, per_day: int, batch: int) -> dict[str, Any]:
    store = open_store(url)
    try:
        loaded = _load(store, days, per_day)
        now_s = (START_US + days * DAY_US) / 1e6
        spec = RetentionSpec.model_validate({"raw": "2d", "batch_rows": batch})
        retention = Retention(store, Registry(store), spec, clock=lambda: now_s)
        wait_quiet()
        batches: list[float] = []
        last = [time.perf_counter()]

        def progress(_model: str, _kind: str, _rows: int) -> None:
            now = time.perf_counter()
            batches.append(now - last[0])
            last[0] = now

        started = time.perf_counter()
        (report,) = retention.run(progress=progress)
        seconds = time.perf_counter() - started
        deleted = sum(report.rows.values())
        return {
            "store": store.dialect,
            "loaded": loaded,
            "deleted": deleted,
            "seconds": seconds,
            "rows_per_s": deleted / seconds,
            "max_batch_ms": 1000 * max(batches, default=0.0),
        }
    finally:
        store.dispose()


def main() -> None:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    results = []
    for name in args.stores.split(","):
        urls = sqlite_url() if name == "sqlite" else pg_url("mw_bench_retention")
        with urls as url:
            results.append(_measure(url, args.days, args.per_day, args.batch))
    print(machine())
    print(
        markdown_table(
            ["store", "rows loaded", "rows deleted", "seconds", "rows/s", "longest batch (ms)"],
            [
                [
                    r["store"],
                    f"{r['loaded']:,}",
                    f"{r['deleted']:,}",
                    f"{r['seconds']:.1f}",
                    f"{r['rows_per_s']:,.0f}",
                    f"{r['max_batch_ms']:.0f}",
                ]
                for r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
