"""What an archived file holds: its columns and types, and the queries that read a day.

Files keep storage column names (``f_0``, ``g_0``), so an archived frame is what
the hot query returns and the frame readers conform both the same way. Types are
fixed per model, so a day whose column is all null has the same schema as a full
one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from modelwatch.store import tables as t
from modelwatch.store.frames import KIND_DTYPES
from modelwatch.store.registry import ModelRecord

__all__ = ["DAY_US", "day_name", "day_start_us", "events_sql", "schema", "usage_sql"]

DAY_US = 86_400 * 1_000_000
_USAGE: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "version_id": pl.Int64(),
    "ts_us": pl.Int64(),
    "received_us": pl.Int64(),
    "latency_ms": pl.Float64(),
    "cpu_seconds": pl.Float64(),
    "memory_mb": pl.Float64(),
    "gpu_seconds": pl.Float64(),
    "cost": pl.Float64(),
    "extra": pl.String(),
    "sample_id": pl.String(),
}


def day_start_us(ts_us: int) -> int:
    return ts_us - ts_us % DAY_US


def day_name(ts_us: int) -> str:
    return datetime.fromtimestamp(day_start_us(ts_us) / 1e6, UTC).strftime("%Y-%m-%d")


def schema(model: ModelRecord, kind: str) -> dict[str, pl.DataType]:
    """Column name to type of an archived file of ``kind`` for ``model``."""
    if kind == "usage":
        return dict(_USAGE)
    layout = model.layout
    columns: dict[str, pl.DataType] = {
        "version_id": pl.Int64(),
        "request_id": pl.String(),
        "ts_us": pl.Int64(),
        "received_us": pl.Int64(),
    }
    columns |= {c.name: KIND_DTYPES[c.kind] for c in layout.event_value_columns}
    columns |= {
        "label": KIND_DTYPES[layout.label_kind],
        "label_ts_us": pl.Int64(),
        "label_received_us": pl.Int64(),
    }
    return columns


def events_sql(model: ModelRecord, version_id: int, start_us: int, end_us: int) -> str:
    """One version's events in ``[start_us, end_us)`` with their labels (if any)."""
    layout = model.layout
    values = ", ".join(f"e.{c.name}" for c in layout.event_value_columns)
    return (
        f"SELECT e.version_id, e.request_id, e.ts_us, e.received_us, {values}, "
        "l.label, l.ts_us AS label_ts_us, l.received_us AS label_received_us "
        f'FROM "{layout.events.name}" e LEFT JOIN "{layout.labels.name}" l '
        f"ON l.request_id = e.request_id WHERE e.version_id = {int(version_id)} "
        f"AND e.ts_us >= {int(start_us)} AND e.ts_us < {int(end_us)}"
    )


def usage_sql(_model: ModelRecord, version_id: int, start_us: int, end_us: int) -> str:
    """One version's usage samples in ``[start_us, end_us)``."""
    columns = ", ".join(_USAGE)
    return (
        f"SELECT {columns} FROM {t.usage_samples.name} WHERE version_id = {int(version_id)} "
        f"AND ts_us >= {int(start_us)} AND ts_us < {int(end_us)}"
    )
