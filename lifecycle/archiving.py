"""Retention with an archive: each closed day is archived, then exactly its archived rows go.

Day by day and version by version, events (with their labels) and usage samples
older than the cut-off are written to the archive and recorded in its catalog;
then the hot rows whose keys are in that file are deleted, in batches, each its
own transaction. A row that reached a closed day after the day was read (a late
import) is not in the file and stays hot until the next run archives the day
again. A day that cannot be archived stops the model's run there: the cut-off
comes forward to it, so labels and later days wait too. A run killed at any point
leaves every row in the hot store, in a catalogued file, or both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from lifecycle.archive import KINDS, ParquetArchive
from modelwatch.errors import ModelwatchError
from modelwatch.store import tables as t
from modelwatch.store.registry import ModelRecord

__all__ = ["ArchivingOutcome", "archive_then_delete"]

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000

Progress = Callable[[str, str, int], None]


@dataclass
class ArchivingOutcome:
    """How far the run got: the cut-off it could honour and the rows per kind."""

    before_us: int
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int) -> int:
        self.rows[kind] = self.rows.get(kind, 0) + n
        return self.rows[kind]


def archive_then_delete(
    archive: ParquetArchive,
    model: ModelRecord,
    before_us: int,
    batch_rows: int,
    progress: Progress | None = None,
) -> ArchivingOutcome:
    """Archive and delete the model's events and usage before ``before_us``."""
    outcome = ArchivingOutcome(before_us)
    for version in archive.registry.list_versions(model):
        for kind in KINDS:
            for day_us in _hot_days(archive, model, version.id, kind, before_us):
                try:
                    written = archive.archive_day(model, version.id, day_us, kind)
                except (ModelwatchError, OSError) as exc:
                    log.warning("archive: %s v%s day %s: %s", model.name, version.id, day_us, exc)
                    outcome.before_us = min(outcome.before_us, day_us)
                    break
                if written is None:
                    continue
                entry, keys = written
                done = outcome.add("archived", entry.rows)
                if progress is not None:
                    progress(model.name, "archived", done)
                _delete_keys(archive, model, version.id, kind, keys, batch_rows, outcome, progress)
    return outcome


def _hot_days(
    archive: ParquetArchive, model: ModelRecord, version_id: int, kind: str, before_us: int
) -> list[int]:
    """The start of each UTC day before ``before_us`` with rows of ``kind`` in the hot store."""
    table = model.layout.events if kind == "events" else t.usage_samples
    day = (table.c.ts_us - table.c.ts_us % DAY_US).label("day")
    query = (
        select(day)
        .where(table.c.version_id == version_id, table.c.ts_us < before_us)
        .group_by(day)
        .order_by(day)
    )
    with archive.store.read() as conn:
        return [int(d) for d in conn.execute(query).scalars()]


def _delete_keys(
    archive: ParquetArchive,
    model: ModelRecord,
    version_id: int,
    kind: str,
    keys: Sequence[object],
    batch_rows: int,
    outcome: ArchivingOutcome,
    progress: Progress | None,
) -> None:
    """Delete the hot rows of the archived ``keys`` (request ids, or usage sample ids)."""
    events, usage = model.layout.events, t.usage_samples
    for start in range(0, len(keys), batch_rows):
        chunk = list(keys[start : start + batch_rows])
        if kind == "events":
            query = delete(events).where(
                events.c.version_id == version_id, events.c.request_id.in_(chunk)
            )
        else:
            query = delete(usage).where(usage.c.id.in_(chunk))
        with archive.store.write() as conn:
            deleted = conn.execute(query).rowcount
        done = outcome.add(kind, max(0, int(deleted)))
        if progress is not None:
            progress(model.name, kind, done)
