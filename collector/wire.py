"""Prediction batches decoded straight from the request bytes, typed per model.

The common batch (every field present with its plain JSON type) is decoded by
msgspec into per-model structs, type-checked in C on the way, and turned into
storage rows with a few Python operations per event: about a third of the CPU
of ``orjson.loads`` plus :func:`collector.validation.validate_events`.

This is only a fast path. It accepts a batch only when
:func:`~collector.validation.validate_events` would accept it and produce the
same rows; anything else (a wrong type, an unknown field, an integer category,
a multiclass model, ...) makes :meth:`EventDecoder.decode` or
:meth:`EventDecoder.rows` return None, and the caller takes the general path,
which words the errors. ``tests/collector/test_wire.py`` holds the two paths
to the same results.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from collector.validation import EventRows
from modelwatch.domain import FeatureType, Task, normalize_class
from modelwatch.store.layout import REQUEST_ID_MAX, ModelLayout
from modelwatch.timeutil import now_us, parse_timestamp_us

__all__ = ["DecodedBatch", "EventDecoder", "event_decoder", "model_hint"]


_MODEL_KEY = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')


def model_hint(body: bytes) -> str | None:
    """The model a batch probably names: the first ``"model": "<plain string>"`` in it.

    Only a hint to choose the decoder; :meth:`EventDecoder.decode` checks that the
    decoded batch names the same model (a feature called ``model`` may come first).
    """
    found = _MODEL_KEY.search(body)
    if found is None:
        return None
    try:
        return found.group(1).decode()
    except UnicodeDecodeError:
        return None


_FEATURE_TYPES: dict[FeatureType, Any] = {
    FeatureType.NUMERIC: float | None,  # msgspec takes integers as floats, never bools
    FeatureType.CATEGORICAL: str | None,
    FeatureType.BOOLEAN: bool | None,
    FeatureType.TEXT: str | None,
}
_RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=REQUEST_ID_MAX)]


def _struct(name: str, fields: list[tuple[str, Any, Any]], wire_names: list[str]) -> Any:
    """A strict struct whose attributes are ``a0, a1, ...`` and whose JSON keys are
    ``wire_names`` (user names need not be identifiers)."""
    attrs = [f"a{i}" for i in range(len(fields))]
    return msgspec.defstruct(
        name,
        [(attr, kind, default) for attr, (_, kind, default) in zip(attrs, fields, strict=True)],
        rename=dict(zip(attrs, wire_names, strict=True)),
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )


@dataclass(frozen=True)
class DecodedBatch:
    model: str
    version: str
    events: list[Any]


class _Decline(Exception):
    """The batch is not plainly valid: the general path decides."""


class EventDecoder:
    """Decodes the ``events`` of one model's batches into :class:`EventRows`."""

    def __init__(self, layout: ModelLayout) -> None:
        spec = layout.spec
        features = _struct(
            "Features",
            [(f.name, _FEATURE_TYPES[f.type], None) for f in spec.features],
            [f.name for f in spec.features],
        )
        segment = _struct("Segment", [(k, str | None, None) for k in spec.segments], spec.segments)
        fields: list[tuple[str, Any, Any]] = [
            ("request_id", _RequestId, msgspec.NODEFAULT),
            ("timestamp", str | int | float, msgspec.NODEFAULT),
            ("prediction", str | int if spec.is_classification else float, msgspec.NODEFAULT),
            ("features", features, msgspec.NODEFAULT),
            ("segment", segment | None, None),
        ]
        if spec.task is Task.BINARY:
            fields.append(("score", float | None, None))
        event = _struct("Event", fields, [name for name, _, _ in fields])
        events: Any = list[event]  # type: ignore[valid-type]
        batch = msgspec.defstruct(
            "Batch",
            [("model", str), ("version", str), ("events", events)],
            forbid_unknown_fields=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch)
        self._classes = frozenset(spec.class_list)
        self._classification = spec.is_classification
        self._binary = spec.task is Task.BINARY
        self._score_required = spec.scores
        self._no_segment = (None,) * len(spec.segments)

    def decode(self, body: bytes, model: str, max_items: int) -> DecodedBatch | None:
        """The batch, if it is plain, names ``model`` and holds 1 to ``max_items`` events."""
        try:
            batch = self._decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if batch.model != model or not 0 < len(batch.events) <= max_items:
            return None
        return DecodedBatch(batch.model, batch.version, batch.events)

    def rows(self, batch: DecodedBatch, version_id: int) -> EventRows | None:
        """Rows as :func:`~collector.validation.validate_events` makes them, or None."""
        try:
            return self._rows(batch.events, version_id)
        except _Decline:
            return None

    def _rows(self, events: list[Any], version_id: int) -> EventRows:
        astuple = msgspec.structs.astuple
        timestamp = _timestamp_us
        prediction = self._prediction
        classes = self._classes
        received = now_us()
        out = EventRows()
        append = out.rows.append
        seen: set[str] = set()
        binary, required = self._binary, self._score_required
        classification, no_segment = self._classification, self._no_segment
        for ev in events:
            rid, ts, pred = ev.a0, timestamp(ev.a1), ev.a2
            if classification and pred not in classes:
                pred = prediction(pred)
            segment = no_segment if ev.a4 is None else astuple(ev.a4)
            if binary:
                score = ev.a5
                if (score is None and required) or not (score is None or 0.0 <= score <= 1.0):
                    raise _Decline
            if rid in seen:
                out.in_batch_duplicates += 1
                continue
            seen.add(rid)
            if binary:
                append((version_id, rid, ts, received, pred, score, *astuple(ev.a3), *segment))
            else:
                append((version_id, rid, ts, received, pred, *astuple(ev.a3), *segment))
        return out

    def _prediction(self, value: str | int) -> str:
        label = normalize_class(value)
        if label is None or label not in self._classes:
            raise _Decline
        return label


def _timestamp_us(value: str | int | float) -> int:
    us = parse_timestamp_us(value)
    if us is None:
        raise _Decline
    return us


_decoders: dict[int, tuple[ModelLayout, EventDecoder | None]] = {}
_decoders_lock = threading.Lock()
_MAX_DECODERS = 512


def event_decoder(layout: ModelLayout) -> EventDecoder | None:
    """The decoder for ``layout`` (built once per layout), or None for multiclass models."""
    cached = _decoders.get(id(layout))
    if cached is not None and cached[0] is layout:
        return cached[1]
    decoder = None if layout.spec.task is Task.MULTICLASS else EventDecoder(layout)
    with _decoders_lock:
        if len(_decoders) >= _MAX_DECODERS:
            _decoders.clear()
        # The layout is kept alive with its decoder, so its id cannot be reused meanwhile.
        _decoders[id(layout)] = (layout, decoder)
    return decoder
