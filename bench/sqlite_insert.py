"""SQLite batch inserts under GIL contention: ``executemany`` against multi-row INSERT.

The evidence for ``modelwatch.store.bulk``'s SQLite path. Inserts N validated
events in 1,000-row transactions (as the service does), alone and while another
thread parses and validates batches (as the service's other requests do):

- ``executemany``: one ``sqlite3_step`` per row, and the sqlite3 module releases
  the GIL around every step; with a busy thread each re-acquisition may wait for
  the switch interval (5 ms);
- ``insert_rows``: ``modelwatch.store.bulk``, multi-row ``INSERT ... VALUES`` of up
  to 512 rows, a handful of GIL releases per batch.

    .venv/bin/python -m bench.sqlite_insert [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import orjson

from bench.common import (
    exit_cleanly_on_sigterm,
    feature_frame,
    machine,
    make_model,
    markdown_table,
    open_store,
    sqlite_url,
    wait_quiet,
    wire_events,
)
from collector.validation import validate_events
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout

BATCH = 1000


def busy(layout: ModelLayout, body: bytes, stop: threading.Event) -> None:
    while not stop.is_set():
        validate_events(layout, 1, orjson.loads(body)["events"])


def run(store: Store, name: str, method: str, contended: bool, events: list[Any]) -> float:
    """Seconds to insert ``events`` in 1,000-row transactions into a fresh table."""
    model, version = make_model(store, name)
    layout = model.layout
    rows = validate_events(layout, version.id, events).rows
    marks = ", ".join("?" for _ in layout.event_columns)
    sql = f'INSERT OR IGNORE INTO "{layout.events.name}" ({", ".join(layout.event_columns)}) '
    sql += f"VALUES ({marks})"

    def write(batch: list[tuple[Any, ...]]) -> None:
        with store.write() as conn:
            if method == "executemany":
                raw: Any = conn.connection.driver_connection
                raw.executemany(sql, batch)
            else:
                insert_rows(conn, layout.events, layout.event_columns, batch, ignore_conflicts=True)

    stop = threading.Event()
    body = orjson.dumps({"events": events[:BATCH]})
    other = threading.Thread(target=busy, args=(layout, body, stop))
    if contended:
        other.start()
    t0 = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        write(rows[start : start + BATCH])
    seconds = time.perf_counter() - t0
    stop.set()
    if contended:
        other.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="best and worst of this many")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    events = wire_events(feature_frame(args.events))
    print(f"SQLite inserts of {args.events:,} events in {BATCH}-row transactions; {machine()}")
    runs: dict[tuple[str, bool], list[float]] = {}
    with sqlite_url() as url:
        store = open_store(url)
        case = 0
        for _ in range(args.rounds):
            for method in ("executemany", "insert_rows"):
                for contended in (False, True):
                    wait_quiet(max_wait=30)
                    case += 1
                    seconds = run(store, f"m{case}", method, contended, events)
                    print(f"{method} busy-thread={contended}: {seconds:.2f} s", flush=True)
                    runs.setdefault((method, contended), []).append(seconds)
        store.dispose()
    n = args.events

    def cells(seconds: float) -> list[object]:
        return [f"{seconds:.2f}", f"{n / seconds / 1000:,.0f}k"]

    rows = [
        [method, "yes" if busy else "no", *cells(min(s)), *cells(max(s))]
        for (method, busy), s in runs.items()
    ]
    print()
    headers = ["insert", "busy thread", "best s", "best events/s", "worst s", "worst events/s"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
