"""Ingest: validate a whole batch, write it in one transaction, then acknowledge.

Shared by the HTTP routes and the file importers, so both have the same
validation and idempotency.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from opentelemetry import trace
from sqlalchemy import select, update

from collector.validation import (
    USAGE_FIELDS,
    parse_envelope,
    validate_events,
    validate_labels,
    validate_usage,
)
from modelwatch.errors import PayloadTooLargeError, ValidationFailed
from modelwatch.store import tables as t
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.telemetry import INGEST_REJECTIONS, INGESTED_ITEMS
from modelwatch.timeutil import now_us

__all__ = ["IngestResult", "Ingestor"]

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What a batch did: ``accepted`` new rows stored, ``duplicates`` already known
    (or repeated in the batch), ``updated`` labels corrected by a newer one."""

    received: int
    accepted: int
    duplicates: int = 0
    updated: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_IngestMethod = Callable[["Ingestor", object], IngestResult]


def _traced(kind: str) -> Callable[[_IngestMethod], _IngestMethod]:
    """One span per batch (never per item) and the ingest counters."""

    def decorate(method: _IngestMethod) -> _IngestMethod:
        @functools.wraps(method)
        def traced(self: Ingestor, payload: object) -> IngestResult:
            body = payload if isinstance(payload, dict) else {}
            labels = {"modelwatch.ingest.kind": kind, "modelwatch.model": str(body.get("model"))}
            with _tracer.start_as_current_span(f"ingest {kind}", attributes=labels) as span:
                if isinstance(body.get("version"), str):
                    span.set_attribute("modelwatch.version", body["version"])
                try:
                    result = method(self, payload)
                except (ValidationFailed, PayloadTooLargeError):
                    # Only the kind: a refused batch's model name may be anything at all.
                    INGEST_REJECTIONS.add(1, {"modelwatch.ingest.kind": kind})
                    raise
                span.set_attributes(
                    {
                        "modelwatch.ingest.received": result.received,
                        "modelwatch.ingest.accepted": result.accepted,
                        "modelwatch.ingest.duplicates": result.duplicates,
                    }
                )
                INGESTED_ITEMS.add(result.accepted, labels)
                return result

        return traced

    return decorate


class Ingestor:
    def __init__(self, store: Store, registry: Registry, max_batch: int = 100_000) -> None:
        self.store = store
        self.registry = registry
        self.max_batch = max_batch

    @contextmanager
    def _recording_rejections(
        self, model_id: int, version_id: int | None, kind: str, items: int
    ) -> Iterator[None]:
        """Record a refused batch (nothing of it is stored) so that data quality can
        report schema violations; the refusal itself still reaches the caller."""
        try:
            yield
        except ValidationFailed as exc:
            try:
                with self.store.write() as conn:
                    conn.execute(
                        t.ingest_rejections.insert().values(
                            model_id=model_id,
                            version_id=version_id,
                            received_us=now_us(),
                            kind=kind,
                            items=items,
                            errors=len(exc.errors),
                            first_error=str(exc)[:1000],
                        )
                    )
            except Exception:  # recording is best effort; the 422 must still be answered
                log.exception("recording a rejected %s batch failed", kind)
            raise

    @_traced("predictions")
    def predictions(self, payload: object) -> IngestResult:
        body, events = parse_envelope(
            payload, {"model": str, "version": str}, "events", self.max_batch
        )
        model = self.registry.get_model(body["model"])
        version = self.registry.get_version(model, body["version"])
        layout = model.layout
        with self._recording_rejections(model.id, version.id, "predictions", len(events)):
            batch = validate_events(layout, version.id, events)
        with self.store.write() as conn:
            inserted = insert_rows(
                conn, layout.events, layout.event_columns, batch.rows, ignore_conflicts=True
            )
        return IngestResult(len(events), inserted, len(events) - inserted)

    @_traced("labels")
    def labels(self, payload: object) -> IngestResult:
        body, labels = parse_envelope(payload, {"model": str}, "labels", self.max_batch)
        model = self.registry.get_model(body["model"])
        table = model.layout.labels
        with self._recording_rejections(model.id, None, "labels", len(labels)):
            batch = validate_labels(model.layout, labels)
        with self.store.write() as conn:
            existing = _existing_labels(conn, table, [r[0] for r in batch.rows])
            fresh = [r for r in batch.rows if r[0] not in existing]
            # A label for a known request id is a correction when it differs and is not older.
            changed = [
                r
                for r in batch.rows
                if r[0] in existing and existing[r[0]][0] != r[1] and r[2] >= existing[r[0]][1]
            ]
            inserted = insert_rows(
                conn,
                table,
                ["request_id", "label", "ts_us", "received_us"],
                fresh,
                ignore_conflicts=True,
            )
            for rid, label, ts, received in changed:
                conn.execute(
                    update(table)
                    .where(table.c.request_id == rid)
                    .values(label=label, ts_us=ts, received_us=received)
                )
        updated = len(changed)
        return IngestResult(len(labels), inserted, len(labels) - inserted - updated, updated)

    @_traced("usage")
    def usage(self, payload: object) -> IngestResult:
        body, samples = parse_envelope(
            payload, {"model": str, "version": str}, "samples", self.max_batch
        )
        model = self.registry.get_model(body["model"])
        version = self.registry.get_version(model, body["version"])
        with self._recording_rejections(model.id, version.id, "usage", len(samples)):
            batch = validate_usage(version.id, samples)
        columns = ["version_id", "ts_us", "received_us", *USAGE_FIELDS, "extra", "sample_id"]
        with self.store.write() as conn:
            inserted = insert_rows(
                conn, t.usage_samples, columns, batch.rows, ignore_conflicts=True
            )
        return IngestResult(len(samples), inserted, len(samples) - inserted)


def _existing_labels(conn: Any, table: Any, request_ids: list[str]) -> dict[str, tuple[Any, int]]:
    found: dict[str, tuple[Any, int]] = {}
    for start in range(0, len(request_ids), _LOOKUP_CHUNK):
        chunk = request_ids[start : start + _LOOKUP_CHUNK]
        rows = conn.execute(
            select(table.c.request_id, table.c.label, table.c.ts_us).where(
                table.c.request_id.in_(chunk)
            )
        )
        for rid, label, ts in rows:
            found[rid] = (label, ts)
    return found
