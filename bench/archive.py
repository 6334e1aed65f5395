"""The Parquet archive: how fast days are archived, what a million events cost in each tier,
and how fast a one-day window reads back from the archive against from the hot tables.

Loads ``--days`` days of ``--per-day`` events (20 numeric and 5 categorical features) with a
label for every other event, then archives and deletes all but the last day with
retention's own code (:func:`lifecycle.archiving.archive_then_delete`, a local
``file://`` archive). Reports archive rows/s (writing the files and deleting the archived
rows), bytes per million events in the hot store (table and index bytes, before) and in
Parquet (zstd), and the best of ``--repeat`` reads of one day with labels
(``read_events``) from the hot tables and from the archive.

    .venv/bin/python -m bench.archive [--days 5] [--per-day 200000] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import (
    START_US,
    best_of,
    exit_cleanly_on_sigterm,
    machine,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
    wait_quiet,
)
from bench.retention import DAY_US, _load
from lifecycle.archive import attach_archive
from lifecycle.archiving import archive_then_delete
from modelwatch.archive import ArchiveSpec
from modelwatch.store.engine import Store
from modelwatch.store.frames import read_events
from modelwatch.store.registry import ModelRecord, Registry


def _hot_bytes(store: Store, model: ModelRecord) -> int:
    """Bytes of the model's events and labels tables with their indexes."""
    layout = model.layout
    names = [layout.events.name, layout.labels.name]
    with store.read() as conn:
        if store.is_postgres:
            query = text("SELECT pg_total_relation_size(:t)")
            return sum(int(conn.execute(query, {"t": n}).scalar_one()) for n in names)
        # SQLite: the pages of each table and of its indexes (dbstat).
        query = text(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = :t OR name IN "
            "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t)"
        )
        return sum(int(conn.execute(query, {"t": n}).scalar() or 0) for n in names)


def _read_day(store: Store, model: ModelRecord, version_id: int, day: int) -> int:
    start = START_US + day * DAY_US
    return read_events(store, model, [version_id], start, start + DAY_US, with_labels=True).height


def _measure(url: str, days: int, per_day: int, repeat: int, root: Path) -> dict[str, Any]:
    store = open_store(url)
    try:
        _load(store, days, per_day)
        registry = Registry(store)
        model = registry.get_model("bench")
        version = registry.list_versions(model)[0]
        hot_bytes = _hot_bytes(store, model)
        wait_quiet()
        hot_s, hot_rows = best_of(repeat, lambda: _read_day(store, model, version.id, 0))
        spec = ArchiveSpec.model_validate({"url": root.as_uri()})
        archive = attach_archive(store, registry, spec)
        assert archive is not None
        started = time.perf_counter()
        before = START_US + (days - 1) * DAY_US
        outcome = archive_then_delete(archive, model, before, 5000)
        seconds = time.perf_counter() - started
        files = archive.files(model, kind="events")
        parquet_bytes = sum(f.bytes for f in files)
        archived = sum(f.rows for f in files)
        wait_quiet()
        cold_s, cold_rows = best_of(repeat, lambda: _read_day(store, model, version.id, 0))
        assert cold_rows == hot_rows, (cold_rows, hot_rows)
        events = days * per_day
        return {
            "store": store.dialect,
            "archived": archived,
            "seconds": seconds,
            "rows_per_s": archived / seconds,
            "deleted": outcome.rows.get("events", 0),
            "hot_mb_per_m": hot_bytes / events * 1e6 / 2**20,
            "parquet_mb_per_m": parquet_bytes / archived * 1e6 / 2**20,
            "hot_read_s": hot_s,
            "cold_read_s": cold_s,
            "day_rows": hot_rows,
        }
    finally:
        store.cold = None
        store.dispose()


def main() -> None:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--per-day", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    results = []
    for name in args.stores.split(","):
        urls = sqlite_url() if name == "sqlite" else pg_url("mw_bench_archive")
        with urls as url, tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as root:
            results.append(_measure(url, args.days, args.per_day, args.repeat, Path(root)))
    print(machine())
    headers = ["store", "rows archived", "s", "rows/s", "hot MB / 1M events"]
    headers += ["Parquet MB / 1M", "read a day: hot s", "from archive s"]
    rows = [
        [
            r["store"],
            f"{r['archived']:,}",
            f"{r['seconds']:.1f}",
            f"{r['rows_per_s']:,.0f}",
            f"{r['hot_mb_per_m']:.0f}",
            f"{r['parquet_mb_per_m']:.0f}",
            f"{r['hot_read_s']:.2f}",
            f"{r['cold_read_s']:.2f}",
        ]
        for r in results
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
