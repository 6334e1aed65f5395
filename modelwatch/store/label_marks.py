"""How far each scheduled label source has been read: watermarks and files taken."""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.timeutil import now_us

__all__ = ["LabelMarks", "decode_watermark", "encode_watermark"]


def encode_watermark(value: Any) -> str:
    """A watermark as tagged JSON, so that it is bound again with its own type."""
    if isinstance(value, bool):
        raise TypeError("a watermark is a number, a text, a date or a timestamp, not a bool")
    tagged: dict[str, Any]
    if isinstance(value, datetime):
        tagged = {"t": "datetime", "v": value.isoformat()}
    elif isinstance(value, date):
        tagged = {"t": "date", "v": value.isoformat()}
    elif isinstance(value, Decimal):
        tagged = {"t": "decimal", "v": str(value)}
    elif isinstance(value, int | float | str):
        tagged = {"t": type(value).__name__, "v": value}
    elif isinstance(value, bytes):
        tagged = {"t": "bytes", "v": base64.b64encode(value).decode()}
    else:
        raise TypeError(f"a watermark of type {type(value).__name__} cannot be kept")
    return orjson.dumps(tagged).decode()


def decode_watermark(text: str) -> Any:
    tagged = orjson.loads(text)
    kind, value = tagged["t"], tagged["v"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


class LabelMarks:
    """The marks of every label source, in the store beside the labels they delivered."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def watermark(self, source: str) -> tuple[bool, Any]:
        """(found, value): the largest watermark taken so far by ``source``."""
        m = t.label_source_marks
        with self.store.read() as conn:
            text = conn.execute(select(m.c.watermark).where(m.c.source == source)).scalar()
        return (False, None) if text is None else (True, decode_watermark(text))

    def set_watermark(self, source: str, value: Any) -> None:
        m = t.label_source_marks
        row = {"source": source, "watermark": encode_watermark(value), "updated_us": now_us()}
        statement = self.store.insert(m).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=[m.c.source],
            set_={"watermark": row["watermark"], "updated_us": row["updated_us"]},
        )
        with self.store.write() as conn:
            conn.execute(statement)

    def files_taken(self, source: str) -> dict[str, int]:
        """Path to size of every file ``source`` has taken."""
        f = t.label_source_files
        with self.store.read() as conn:
            rows = conn.execute(select(f.c.path, f.c.size).where(f.c.source == source))
            return {path: size for path, size in rows}

    def take_file(self, source: str, path: str, size: int, rows: int) -> None:
        f = t.label_source_files
        row = {"source": source, "path": path, "size": size, "rows": rows, "taken_us": now_us()}
        statement = self.store.insert(f).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=[f.c.source, f.c.path],
            set_={"size": size, "rows": rows, "taken_us": row["taken_us"]},
        )
        with self.store.write() as conn:
            conn.execute(statement)
