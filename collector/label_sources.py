"""Scheduled label sources: pull ground truth from a SQL query or a folder of files.

Each pull reads what is new since the source's mark (a SQL watermark, or the files
already taken), sends it through the same label ingest as ``POST /v1/labels`` in
batches, and moves the mark only after the batch is stored. A pull cut short (a crash,
the source down) is repeated from the last mark, and a label stored twice is counted as
a duplicate, not stored again. A bad row (no request id, a label the model does not
know) is logged with its row number and field and left out; the rest of its batch is
stored.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import polars as pl

from collector.ingest import Ingestor
from modelwatch.archive import open_filesystem
from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.label_sources import FileLabelSource, LabelSourceSpec, SqlLabelSource
from modelwatch.store.engine import normalize_url
from modelwatch.store.label_marks import LabelMarks

__all__ = ["LabelSourcePuller", "PullResult"]

log = logging.getLogger(__name__)

Job = tuple[Callable[[], None], float, str]
Progress = Callable[[int], None]


@dataclass
class PullResult:
    """What one pull of one source did."""

    source: str
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    updated: int = 0
    rejected: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "updated": self.updated,
            "rejected": self.rejected,
            "files": self.files,
        }


class LabelSourcePuller:
    """Pulls every configured label source; ``jobs()`` for the scheduler."""

    def __init__(self, ingestor: Ingestor, specs: Sequence[LabelSourceSpec]) -> None:
        self.ingestor = ingestor
        self.specs = {s.name: s for s in specs}
        self.marks = LabelMarks(ingestor.store)
        self._engines: dict[str, Any] = {}

    def jobs(self) -> list[Job]:
        return [
            (partial(self.pull_quietly, name), float(spec.interval), f"labels:{name}")
            for name, spec in self.specs.items()
        ]

    def pull_quietly(self, name: str) -> None:
        """A scheduled pull: logs its outcome, never raises."""
        try:
            result = self.pull(name)
        except Exception:
            log.exception(
                "label source %r: the pull failed; the next one resumes from its mark", name
            )
            return
        if result.read:
            log.info("label source %r: %s", name, result.as_dict())

    def pull(self, name: str, progress: Progress | None = None) -> PullResult:
        """Everything new in source ``name``; ``progress`` gets the rows of each batch."""
        spec = self.specs[name]
        result = PullResult(name)
        if spec.sql is not None:
            self._pull_sql(spec, spec.sql, result, progress)
        elif spec.files is not None:
            self._pull_files(spec, spec.files, result, progress)
        return result

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()

    # --- SQL --------------------------------------------------------------------------
    def _pull_sql(
        self,
        spec: LabelSourceSpec,
        sql: SqlLabelSource,
        result: PullResult,
        progress: Progress | None,
    ) -> None:
        from sqlalchemy import text  # the source's own engine, not the store's

        found, mark = self.marks.watermark(spec.name)
        watermark = mark if found else sql.start
        with self._engine(spec.name, sql.url).connect() as conn:
            rows = conn.execution_options(stream_results=True).execute(
                text(sql.query), {"watermark": watermark}
            )
            names = list(rows.keys())
            if sql.watermark not in names:
                raise ValueError(
                    f"label source {spec.name!r}: the query has no column {sql.watermark!r} "
                    f"(its watermark); it returns {names}"
                )
            at = names.index(sql.watermark)
            while batch := rows.fetchmany(spec.batch_rows):
                values = [r[at] for r in batch]
                _check_order(spec.name, watermark if found else None, values)
                frame = pl.DataFrame([tuple(r) for r in batch], schema=names, orient="row")
                self._deliver(spec, frame, result, progress)
                watermark, found = values[-1], True
                self.marks.set_watermark(spec.name, watermark)

    def _engine(self, name: str, url: str) -> Any:
        if name not in self._engines:
            from sqlalchemy import create_engine

            self._engines[name] = create_engine(normalize_url(url), pool_pre_ping=True)
        return self._engines[name]

    # --- files ------------------------------------------------------------------------
    def _pull_files(
        self,
        spec: LabelSourceSpec,
        files: FileLabelSource,
        result: PullResult,
        progress: Progress | None,
    ) -> None:
        fs, base = open_filesystem(files)
        taken = self.marks.files_taken(spec.name)
        for path, size in _matching(fs, base, files.glob):
            if taken.get(path) == size:
                continue
            rows = 0
            for frame in _read_file(fs, path, spec.batch_rows):
                rows += frame.height
                self._deliver(spec, frame, result, progress, where=path)
            self.marks.take_file(spec.name, path, size, rows)
            result.files += 1

    # --- one batch --------------------------------------------------------------------
    def _deliver(
        self,
        spec: LabelSourceSpec,
        frame: pl.DataFrame,
        result: PullResult,
        progress: Progress | None,
        where: str = "",
    ) -> None:
        labels = _labels(spec, frame, where)
        offset = result.read
        result.read += len(labels)
        kept = list(range(len(labels)))
        while kept:
            try:
                stored = self.ingestor.labels(
                    {"model": spec.model, "labels": [labels[i] for i in kept]}
                )
            except ValidationFailed as exc:
                bad = _bad_rows(exc.errors, len(kept))
                if not bad:
                    raise
                for i, error in bad.items():
                    row = kept[i]
                    message = (
                        f"row {offset + row + 1}{where and f' of {where}'}: {_describe(error)}"
                    )
                    log.warning("label source %r: %s", spec.name, message)
                    result.errors.append(message)
                result.rejected += len(bad)
                kept = [row for i, row in enumerate(kept) if i not in bad]
                continue
            result.stored += stored.accepted
            result.duplicates += stored.duplicates
            result.updated += stored.updated
            break
        if progress is not None:
            progress(len(labels))


def _labels(spec: LabelSourceSpec, frame: pl.DataFrame, where: str) -> list[dict[str, Any]]:
    cols = spec.columns
    wanted = {"request_id": cols.request_id, "label": cols.label}
    if cols.timestamp is not None:
        wanted["timestamp"] = cols.timestamp
    missing = sorted(c for c in wanted.values() if c not in frame.columns)
    if missing:
        raise ValueError(
            f"label source {spec.name!r}{where and f' ({where})'}: no column {missing} "
            f"(it has {frame.columns}); set columns: to map them"
        )
    picked = frame.select(pl.col(source).alias(name) for name, source in wanted.items())
    if "timestamp" in picked.columns and isinstance(
        picked.schema["timestamp"], pl.Datetime | pl.Date
    ):
        stamp = (
            pl.col("timestamp").cast(pl.Datetime("us"))
            if picked.schema["timestamp"] == pl.Date
            else pl.col("timestamp")
        )
        picked = picked.with_columns(stamp.dt.epoch("us") / 1_000_000)
    if "request_id" in picked.columns and picked.schema["request_id"] != pl.String:
        picked = picked.with_columns(pl.col("request_id").cast(pl.String))
    return picked.to_dicts()


def _bad_rows(errors: Sequence[FieldError], count: int) -> dict[int, FieldError]:
    """Errors by row index within the batch (``labels[3].label`` is row 3)."""
    bad: dict[int, FieldError] = {}
    for error in errors:
        loc = error.loc
        if len(loc) >= 2 and loc[0] == "labels" and isinstance(loc[1], int) and loc[1] < count:
            bad.setdefault(loc[1], error)
    return bad


def _describe(error: FieldError) -> str:
    column = error.loc[2] if len(error.loc) > 2 else "row"
    return f"{column}: {error.msg} (got {error.input!r})"


def _check_order(name: str, previous: Any, values: list[Any]) -> None:
    seq = values if previous is None else [previous, *values]
    if any(b < a for a, b in itertools.pairwise(seq)):
        raise ValueError(
            f"label source {name!r}: the query must ORDER BY its watermark column, so a "
            "pull cut short resumes where it stopped"
        )


def _matching(fs: Any, base: str, pattern: str) -> Iterator[tuple[str, int]]:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    infos = [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    for info in sorted(infos, key=lambda i: i.path):
        relative = info.path[len(base) :].lstrip("/")
        if fnmatch.fnmatch(relative, pattern):
            yield info.path, int(info.size)


def _read_file(fs: Any, path: str, batch_rows: int) -> Iterator[pl.DataFrame]:
    if path.endswith(".csv"):
        with fs.open_input_stream(path) as stream:
            frame = pl.read_csv(stream.read(), try_parse_dates=True)
        for start in range(0, frame.height, batch_rows):
            yield frame.slice(start, batch_rows)
        return
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
            table = pl.from_arrow(batch)
            assert isinstance(table, pl.DataFrame)
            yield table
