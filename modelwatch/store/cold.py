"""Cold storage of raw events: the protocol the frame readers read archived days through.

The store's readers do not know where the archive is or how it is written; a
capability that archives (``lifecycle``) sets ``Store.cold`` to an object with
these methods: :func:`modelwatch.store.frames.read_events` adds the archived rows
to those still in the hot tables, and the planner's window states count archived
windows, so ``evaluate --since`` plans them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import polars as pl

    from modelwatch.store.registry import ModelRecord

__all__ = ["ColdEvents"]


class ColdEvents(Protocol):
    def read_events(
        self, model: ModelRecord, version_ids: Sequence[int], start_us: int, end_us: int
    ) -> pl.DataFrame | None:
        """Archived events of ``version_ids`` with ``start_us <= ts_us < end_us`` (storage
        column names, any order), or None when no archived day overlaps the range."""
        ...

    def first_event_us(self, model: ModelRecord, version_id: int) -> int | None:
        """The time of the version's first archived event (None when none is archived)."""
        ...

    def window_counts(
        self, model: ModelRecord, version_id: int, window_us: int, start_us: int, end_us: int
    ) -> dict[int, tuple[int, int]]:
        """Per ``window_us`` window (by its index, ``ts_us // window_us``) in the range,
        whose bounds are window bounds (as the planner's are): the archived events and
        the latest ``received_us`` among them."""
        ...
