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
    EventRows,
    parse_envelope,
    validate_events,
    validate_labels,
    validate_usage,
)
from collector.wire import DecodedBatch, EventDecoder, event_decoder, model_hint
from modelwatch.errors import NotFoundError, PayloadTooLargeError, ValidationFailed
from modelwatch.http import parse_json
from modelwatch.storable import may_hold_nul
from modelwatch.store import tables as t
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord, Registry
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


@contextmanager
def _ingest_span(
    kind: str, model: object, version: object
) -> Iterator[Callable[[IngestResult], None]]:
    """One span per batch (never per item) and the ingest counters; yields the
    function that records the batch's result."""
    labels = {"modelwatch.ingest.kind": kind, "modelwatch.model": str(model)}
    with _tracer.start_as_current_span(f"ingest {kind}", attributes=labels) as span:
        if isinstance(version, str):
            span.set_attribute("modelwatch.version", version)

        def record(result: IngestResult) -> None:
            span.set_attributes(
                {
                    "modelwatch.ingest.received": result.received,
                    "modelwatch.ingest.accepted": result.accepted,
                    "modelwatch.ingest.duplicates": result.duplicates,
                }
            )
            INGESTED_ITEMS.add(result.accepted, labels)

        try:
            yield record
        except (ValidationFailed, PayloadTooLargeError):
            # Only the kind: a refused batch's model name may be anything at all.
            INGEST_REJECTIONS.add(1, {"modelwatch.ingest.kind": kind})
            raise


_IngestMethod = Callable[["Ingestor", object], IngestResult]


def _traced(kind: str) -> Callable[[_IngestMethod], _IngestMethod]:
    def decorate(method: _IngestMethod) -> _IngestMethod:
        @functools.wraps(method)
        def traced(self: Ingestor, payload: object) -> IngestResult:
            body = payload if isinstance(payload, dict) else {}
            with _ingest_span(kind, body.get("model"), body.get("version")) as record:
                result = method(self, payload)
                record(result)
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

    def predictions_json(self, body: bytes) -> IngestResult:
        """Store a prediction batch given as the request's JSON bytes.

        Plain batches are decoded straight into rows (:mod:`collector.wire`); any
        other body goes through :meth:`predictions`, which words the errors.
        """
        plain = self._decode_plain(body)
        if plain is None:
            return self.predictions(parse_json(body, check_text=False))
        model, decoder, batch = plain
        version = self.registry.get_version(model, batch.version)
        rows = decoder.rows(batch, version.id)
        if rows is None:
            return self.predictions(parse_json(body, check_text=False))
        with _ingest_span("predictions", batch.model, batch.version) as record:
            result = self._store_events(model, rows, len(batch.events))
            record(result)
            return result

    def _decode_plain(self, body: bytes) -> tuple[ModelRecord, EventDecoder, DecodedBatch] | None:
        """The batch's model, its decoder and the decoded batch, if the batch is plain."""
        if may_hold_nul(body):  # a NUL character somewhere: the validator names the field
            return None
        hint = model_hint(body)
        if hint is None:
            return None
        try:
            model = self.registry.get_model(hint)
        except NotFoundError:
            return None
        decoder = event_decoder(model.layout)
        if decoder is None:
            return None
        batch = decoder.decode(body, model.name, self.max_batch)
        return None if batch is None else (model, decoder, batch)

    @_traced("predictions")
    def predictions(self, payload: object) -> IngestResult:
        body, events = parse_envelope(
            payload, {"model": str, "version": str}, "events", self.max_batch
        )
        model = self.registry.get_model(body["model"])
        version = self.registry.get_version(model, body["version"])
        with self._recording_rejections(model.id, version.id, "predictions", len(events)):
            rows = validate_events(model.layout, version.id, events)
        return self._store_events(model, rows, len(events))

    def _store_events(self, model: ModelRecord, batch: EventRows, received: int) -> IngestResult:
        layout = model.layout
        with self.store.write() as conn:
            inserted = insert_rows(
                conn, layout.events, layout.event_columns, batch.rows, ignore_conflicts=True
            )
        return IngestResult(received, inserted, received - inserted)

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
