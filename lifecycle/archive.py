"""The Parquet archive: closed days of raw data in a file system or S3-compatible storage.

Each day of one version's events (joined with their labels) is one Parquet file,
``{url}/model={name}/version_id={id}/day={YYYY-MM-DD}/events.parquet``, and its
usage samples another (``usage.parquet``). A file is written whole and then
recorded in the catalog (``archive_files``: rows, bytes, SHA-256); only what the
catalog lists is read, verified, restored or counted as archived, so a process
killed while writing leaves at most a file the catalog does not know, which the
next run overwrites. Archiving a day again merges what is already archived with
what is in the hot tables, so it replaces the file with exactly the same rows
plus any that arrived since.

Files go through pyarrow's file-system layer (``LocalFileSystem``,
``S3FileSystem``), which reads S3 credentials from the environment.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from sqlalchemy import ColumnElement, select

from lifecycle.archive_frames import (
    DAY_US,
    day_name,
    day_start_us,
    events_sql,
    schema,
    usage_sql,
)
from modelwatch.archive import ArchiveSpec, open_filesystem
from modelwatch.errors import StoreError
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.frames import fetch
from modelwatch.store.registry import ModelRecord, Registry

__all__ = [
    "KINDS",
    "ArchivedFile",
    "ParquetArchive",
    "Verdict",
    "attach_archive",
]

KINDS = ("events", "usage")
FACTS_KEPT = 10_000  # per-file first events and window counts kept for the planner


@dataclass(frozen=True)
class ArchivedFile:
    """One catalog entry: a day of one version's rows of one kind."""

    model_id: int
    version_id: int
    day: str
    kind: str
    path: str
    rows: int
    bytes: int
    sha256: str
    written_at: datetime


@dataclass(frozen=True)
class Verdict:
    """What verifying one catalogued file found: ``ok``, or the reason it is not."""

    file: ArchivedFile
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class ParquetArchive:
    """Writes, reads and verifies archived days; the store's cold reader."""

    def __init__(self, store: Store, registry: Registry, spec: ArchiveSpec) -> None:
        self.store = store
        self.registry = registry
        self.spec = spec
        self.fs, self.base = open_filesystem(spec)
        self._facts: dict[tuple[str, str, int], Any] = {}

    # --- writing --------------------------------------------------------------
    def archive_day(
        self, model: ModelRecord, version_id: int, day_us: int, kind: str
    ) -> tuple[ArchivedFile, list[Any]] | None:
        """Write one day of one version's rows of ``kind`` (merged with what is already
        archived) and record it; returns the entry and the keys of the rows in the file
        (request ids, or usage sample ids), or None when the day has no rows anywhere."""
        start, end = day_start_us(day_us), day_start_us(day_us) + DAY_US
        sql = events_sql if kind == "events" else usage_sql
        hot = fetch(self.store, sql(model, version_id, start, end))
        known = self._entry(model, version_id, day_name(start), kind)
        frame = _conform(model, kind, hot)
        if known is not None:
            old = self.read_file(known, model)
            frame = pl.concat([frame, old], how="vertical_relaxed")
            frame = frame.unique(_identity(kind), keep="first", maintain_order=True)
        if frame.is_empty():
            return None
        frame = frame.sort(_order(kind))
        entry = self._write(model, version_id, day_name(start), kind, frame)
        return entry, frame[_identity(kind)[-1]].to_list()

    def _write(
        self, model: ModelRecord, version_id: int, day: str, kind: str, frame: pl.DataFrame
    ) -> ArchivedFile:
        data = _parquet_bytes(frame)
        path = f"{self.base}/model={model.name}/version_id={version_id}/day={day}/{kind}.parquet"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        self._put(path, data)
        entry = ArchivedFile(
            model.id,
            version_id,
            day,
            kind,
            path,
            frame.height,
            len(data),
            hashlib.sha256(data).hexdigest(),
            datetime.now(UTC),
        )
        self._record(entry)
        return entry

    def _put(self, path: str, data: bytes) -> None:
        """Write ``data`` so that ``path`` is never seen half written: an S3 object
        appears when its upload completes; a local file is renamed into place."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            partial = f"{path}.{uuid.uuid4().hex}.partial"
            with self.fs.open_output_stream(partial) as out:
                out.write(data)
            self.fs.move(partial, path)
            return
        with self.fs.open_output_stream(path) as out:
            out.write(data)

    def _record(self, entry: ArchivedFile) -> None:
        row = {
            "model_id": entry.model_id,
            "version_id": entry.version_id,
            "day": entry.day,
            "kind": entry.kind,
            "path": entry.path,
            "rows": entry.rows,
            "bytes": entry.bytes,
            "sha256": entry.sha256,
            "written_at": entry.written_at,
        }
        key = ["model_id", "version_id", "day", "kind"]
        statement = self.store.insert(t.archive_files).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=key, set_={k: v for k, v in row.items() if k not in key}
        )
        with self.store.write() as conn:
            conn.execute(statement)

    # --- the catalog ------------------------------------------------------------
    def files(
        self, model: ModelRecord, *, day: str | None = None, kind: str | None = None
    ) -> list[ArchivedFile]:
        """The model's catalogued files, by day, version and kind."""
        c = t.archive_files.c
        where = [] if day is None else [c.day == day]
        return self._catalog(model, *where, *([] if kind is None else [c.kind == kind]))

    def _catalog(self, model: ModelRecord, *where: ColumnElement[bool]) -> list[ArchivedFile]:
        c = t.archive_files.c
        query = select(t.archive_files).where(c.model_id == model.id, *where)
        with self.store.read() as conn:
            rows = conn.execute(query.order_by(c.day, c.version_id, c.kind)).mappings().all()
        return [_entry_of(r) for r in rows]

    def _entry(
        self, model: ModelRecord, version_id: int, day: str, kind: str
    ) -> ArchivedFile | None:
        c = t.archive_files.c
        found = self._catalog(model, c.version_id == version_id, c.day == day, c.kind == kind)
        return found[0] if found else None

    # --- reading ----------------------------------------------------------------
    def read_events(
        self, model: ModelRecord, version_ids: Sequence[int], start_us: int, end_us: int
    ) -> pl.DataFrame | None:
        entries = self._overlapping(model, version_ids, start_us, end_us)
        if not entries:
            return None
        frames = [self.read_file(e, model) for e in entries]
        frame = pl.concat(frames, how="vertical_relaxed")
        return frame.filter((pl.col("ts_us") >= start_us) & (pl.col("ts_us") < end_us))

    def first_event_us(self, model: ModelRecord, version_id: int) -> int | None:
        c = t.archive_files.c
        files = self._catalog(model, c.kind == "events", c.version_id == version_id)
        return None if not files else self._first_ts(files[0])  # the catalog orders by day

    def window_counts(
        self, model: ModelRecord, version_id: int, window_us: int, start_us: int, end_us: int
    ) -> dict[int, tuple[int, int]]:
        merged: dict[int, tuple[int, int]] = {}
        for entry in self._overlapping(model, [version_id], start_us, end_us):
            for k, (n, received) in self._file_counts(entry, window_us).items():
                if start_us <= k * window_us < end_us:
                    n_before, received_before = merged.get(k, (0, 0))
                    merged[k] = (n_before + n, max(received, received_before))
        return merged

    # The planner asks for first events and window counts on every pass; a catalogued file
    # never changes under its path and checksum, so what it says is read once.
    def _first_ts(self, entry: ArchivedFile) -> int | None:
        key = (entry.path, entry.sha256, 0)
        if key not in self._facts:
            ts = self._read_columns(entry, ["ts_us"])["ts_us"].min()
            self._remember(key, None if ts is None else int(ts))  # type: ignore[arg-type]
        first: int | None = self._facts[key]
        return first

    def _file_counts(self, entry: ArchivedFile, window_us: int) -> dict[int, tuple[int, int]]:
        """Per window of the file's rows: the events and the latest ``received_us``."""
        key = (entry.path, entry.sha256, window_us)
        if key not in self._facts:
            counts = (
                self._read_columns(entry, ["ts_us", "received_us"])
                .group_by(pl.col("ts_us") // window_us)
                .agg(pl.len().alias("n"), pl.col("received_us").max().alias("received"))
            )
            self._remember(key, {int(k): (int(n), int(r)) for k, n, r in counts.iter_rows()})
        facts: dict[int, tuple[int, int]] = self._facts[key]
        return facts

    def _remember(self, key: tuple[str, str, int], fact: Any) -> None:
        if len(self._facts) >= FACTS_KEPT:
            self._facts.pop(next(iter(self._facts)))
        self._facts[key] = fact

    def _read_columns(self, entry: ArchivedFile, columns: list[str]) -> pl.DataFrame:
        return self._read_table(entry, columns).cast(pl.Int64)

    def _read_table(self, entry: ArchivedFile, columns: list[str] | None = None) -> pl.DataFrame:
        try:
            with self.fs.open_input_file(entry.path) as handle:
                table = pq.read_table(handle, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"archive: reading {entry.path} failed: {exc}") from exc
        return pl.DataFrame(pl.from_arrow(table))

    def _overlapping(
        self, model: ModelRecord, version_ids: Sequence[int], start_us: int, end_us: int
    ) -> list[ArchivedFile]:
        c = t.archive_files.c
        first, last = day_name(start_us), day_name(max(start_us, end_us - 1))
        return self._catalog(
            model,
            c.kind == "events",
            c.version_id.in_([int(v) for v in version_ids]),
            c.day >= first,
            c.day <= last,
        )

    def read_file(self, entry: ArchivedFile, model: ModelRecord) -> pl.DataFrame:
        """A catalogued file's rows, in the archive's columns and types for ``model``."""
        return _conform(model, entry.kind, self._read_table(entry))

    # --- checking -----------------------------------------------------------------
    def verify(self, entry: ArchivedFile) -> Verdict:
        """Read the file back: it must exist with the catalog's bytes, checksum and rows."""
        try:
            with self.fs.open_input_file(entry.path) as handle:
                data = handle.read()
        except (OSError, pa.ArrowException) as exc:
            return Verdict(entry, f"cannot be read: {exc}")
        if len(data) != entry.bytes:
            return Verdict(entry, f"{len(data)} bytes, the catalog says {entry.bytes}")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            return Verdict(entry, "its SHA-256 differs from the catalog's")
        rows = pq.read_metadata(io.BytesIO(data)).num_rows
        if rows != entry.rows:
            return Verdict(entry, f"{rows} rows, the catalog says {entry.rows}")
        return Verdict(entry, None)


def _identity(kind: str) -> list[str]:
    return ["version_id", "request_id"] if kind == "events" else ["id"]


def _order(kind: str) -> list[str]:
    return ["version_id", "ts_us", "request_id" if kind == "events" else "id"]


def _conform(model: ModelRecord, kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    wanted = schema(model, kind)
    columns = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in wanted.items()
    ]
    return frame.select(columns)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _entry_of(row: Any) -> ArchivedFile:
    return ArchivedFile(
        row["model_id"],
        row["version_id"],
        row["day"],
        row["kind"],
        row["path"],
        row["rows"],
        row["bytes"],
        row["sha256"],
        row["written_at"],
    )


def attach_archive(
    store: Store, registry: Registry, spec: ArchiveSpec | None
) -> ParquetArchive | None:
    """The configured archive, set as the store's cold reader (None when there is none)."""
    if spec is None:
        return None
    archive = ParquetArchive(store, registry, spec)
    store.cold = archive
    return archive
