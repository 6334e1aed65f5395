"""Cold storage of raw events: the protocol the frame readers read archived days through.

The store's readers do not know where the archive is or how it is written; a
capability that archives (``lifecycle``) sets ``Store.cold`` to an object with
this one method, and :func:`modelwatch.store.frames.read_events` adds what it
returns to the rows still in the hot tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import polars as pl

    from modelwatch.store.registry import ModelRecord

__all__ = ["COLD_EVENT_KEYS", "ColdEvents"]

COLD_EVENT_KEYS = ("version_id", "request_id", "ts_us", "received_us")
"""The leading columns of an archived events frame; then the layout's value columns by
storage name, then ``label``, ``label_ts_us`` and ``label_received_us``."""


class ColdEvents(Protocol):
    def read_events(
        self, model: ModelRecord, version_ids: Sequence[int], start_us: int, end_us: int
    ) -> pl.DataFrame | None:
        """Archived events of ``version_ids`` with ``start_us <= ts_us < end_us`` (storage
        column names, any order), or None when no archived day overlaps the range."""
        ...
