"""Restore: an archived day back in the hot tables, for a drill-down or a re-ingest.

Rows already in the hot tables are skipped (they are the same rows), so restoring
twice stores nothing twice. Retention will archive and delete the day again when it
next runs if the day is still past the cut-off: restore for a look, or set a longer
``raw`` first.
"""

from __future__ import annotations

import polars as pl

from lifecycle.archive import ArchivedFile, ParquetArchive
from modelwatch.store import tables as t
from modelwatch.store.bulk import insert_rows
from modelwatch.store.registry import ModelRecord

__all__ = ["restore_day"]

_LABEL_COLUMNS = ["request_id", "label", "ts_us", "received_us"]


def restore_day(archive: ParquetArchive, model: ModelRecord, entry: ArchivedFile) -> int:
    """Put one catalogued file's rows back; returns the events (or usage samples) inserted."""
    return _insert(archive, model, entry, archive.read_file(entry, model))


def _insert(
    archive: ParquetArchive, model: ModelRecord, entry: ArchivedFile, frame: pl.DataFrame
) -> int:
    layout = model.layout
    with archive.store.write() as conn:
        if entry.kind == "usage":
            columns = [c.name for c in t.usage_samples.columns]
            rows = frame.select(columns).rows()
            return insert_rows(conn, t.usage_samples, columns, rows, ignore_conflicts=True)
        events = frame.select(layout.event_columns).rows()
        inserted = insert_rows(
            conn, layout.events, layout.event_columns, events, ignore_conflicts=True
        )
        labels = (
            frame.filter(pl.col("label").is_not_null())
            .select("request_id", "label", "label_ts_us", "label_received_us")
            .unique("request_id")
            .rows()
        )
        insert_rows(conn, layout.labels, _LABEL_COLUMNS, labels, ignore_conflicts=True)
        return inserted
