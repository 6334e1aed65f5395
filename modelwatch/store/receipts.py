"""Receipts of signed webhooks: a delivery is applied once, however often it arrives.

A sender's ``webhook-id`` is its idempotency key (the Standard Webhooks convention).
A receipt is claimed in the same transaction as the delivery's effect, so of two
copies arriving together only one passes. Receipts are kept while a copy could
still pass the timestamp check, then pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.timeutil import utcnow

__all__ = ["Receipt", "Receipts"]


@dataclass(frozen=True)
class Receipt:
    """One delivery: who sent it (e.g. ``pipeline:trainer``) and its ``webhook-id``."""

    source: str
    webhook_id: str


class Receipts:
    def __init__(self, store: Store, keep_s: float) -> None:
        self.store = store
        self.keep = timedelta(seconds=keep_s)

    def seen(self, receipt: Receipt) -> bool:
        r = t.webhook_receipts
        with self.store.read() as conn:
            row = conn.execute(
                select(r.c.received_at).where(
                    r.c.source == receipt.source, r.c.webhook_id == receipt.webhook_id
                )
            ).first()
        return row is not None

    def claim(self, conn: Connection, receipt: Receipt) -> bool:
        """Record ``receipt`` in ``conn``'s transaction; False when it was already there
        (a concurrent copy waits for the first to commit, then finds it)."""
        r = t.webhook_receipts
        now = utcnow()
        conn.execute(delete(r).where(r.c.received_at < now - self.keep))
        done = conn.execute(
            self.store.insert(r)
            .values(source=receipt.source, webhook_id=receipt.webhook_id, received_at=now)
            .on_conflict_do_nothing()
            .returning(r.c.webhook_id)
        )
        # rowcount of INSERT .. ON CONFLICT DO NOTHING is -1 under psycopg; RETURNING
        # lists only the row this transaction inserted.
        return done.first() is not None
