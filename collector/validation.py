"""Validate batches against a model's schema and turn them into storage rows.

Everything in a batch is checked before anything is written, so a bad batch
stores nothing. Errors name the path of each bad field, e.g.
``events[3].features.age``; at most :data:`MAX_ERRORS` are reported. A string
holding the NUL character is refused wherever it would be stored (PostgreSQL
text cannot hold it), so that both stores take the same batches.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelwatch.domain import FeatureType, normalize_class
from modelwatch.errors import FieldError, PayloadTooLargeError, ValidationFailed
from modelwatch.storable import NUL, NUL_MESSAGE
from modelwatch.store.layout import REQUEST_ID_MAX, ModelLayout
from modelwatch.timeutil import now_us, parse_timestamp_us

__all__ = [
    "MAX_ERRORS",
    "EventRows",
    "LabelRows",
    "UsageRows",
    "parse_envelope",
    "validate_events",
    "validate_labels",
    "validate_usage",
]

MAX_ERRORS = 100
Loc = tuple[str | int, ...]

USAGE_FIELDS = ("latency_ms", "cpu_seconds", "memory_mb", "gpu_seconds", "cost")
_EVENT_KEYS = frozenset(
    {"request_id", "timestamp", "features", "prediction", "score", "scores", "segment"}
)


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, loc: Loc, msg: str, value: object = None) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append(FieldError(loc, msg, _preview(value)))

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_ERRORS

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)


def _preview(value: object) -> object:
    if isinstance(value, (str, bytes)) and len(value) > 80:
        return value[:80] + "…"  # type: ignore[operator]
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return value


def parse_envelope(
    payload: object, keys: Mapping[str, type], list_key: str, max_items: int
) -> tuple[dict[str, Any], list[Any]]:
    """Check the top-level object: required string keys and the item list."""
    errors = _Errors()
    if not isinstance(payload, dict):
        raise ValidationFailed([FieldError((), "request body must be a JSON object")])
    for key, kind in keys.items():
        value = payload.get(key)
        if not isinstance(value, kind):
            errors.add((key,), f"required, must be a {kind.__name__}", value)
        elif isinstance(value, str) and NUL in value:
            errors.add((key,), NUL_MESSAGE, value)
    items = payload.get(list_key)
    if not isinstance(items, list):
        errors.add((list_key,), "required, must be a list", items)
    elif not items:
        errors.add((list_key,), "must not be empty")
    unknown = set(payload) - set(keys) - {list_key}
    for key in sorted(unknown):
        errors.add((key,), "unknown field")
    errors.raise_if_any()
    assert isinstance(items, list)
    if len(items) > max_items:  # a size problem: 413 tells clients to split the batch
        raise PayloadTooLargeError(
            f"{list_key}: at most {max_items} items per request, got {len(items)}"
        )
    return payload, items


# --- value checks ------------------------------------------------------------
# Each returns the stored value, or raises _Bad with the reason.


class _Bad(Exception):
    pass


def _float(v: object) -> float | None:
    if v is None:
        return None
    if type(v) is float:
        if math.isfinite(v):
            return v
        raise _Bad("must be a finite number")
    if type(v) is int:
        return float(v)
    raise _Bad("must be a number")


def _text(v: object) -> str | None:
    if v is None:
        return v
    if type(v) is str:
        return _storable(v)
    raise _Bad("must be a string")


def _storable(v: str) -> str:
    if NUL in v:
        raise _Bad(NUL_MESSAGE)
    return v


def _category(v: object) -> str | None:
    if v is None:
        return v
    if type(v) is str:
        return _storable(v)
    if isinstance(v, (int, bool)):
        return normalize_class(v)
    raise _Bad("must be a string (or integer) category")


def _bool(v: object) -> bool | None:
    if v is None or type(v) is bool:
        return v
    if type(v) is int and v in (0, 1):
        return bool(v)
    raise _Bad("must be true or false")


_FEATURE_CHECKS: dict[FeatureType, Callable[[object], object]] = {
    FeatureType.NUMERIC: _float,
    FeatureType.CATEGORICAL: _category,
    FeatureType.BOOLEAN: _bool,
    FeatureType.TEXT: _text,
}
# The one type per feature type that its check passes through unchanged (floats only
# when finite): events made only of those take the fast path in :func:`_features`.
_FAST_TYPES: dict[FeatureType, type] = {
    FeatureType.NUMERIC: float,
    FeatureType.CATEGORICAL: str,
    FeatureType.BOOLEAN: bool,
    FeatureType.TEXT: str,
}


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``d -> tuple(d[n] for n in names)`` in C; raises KeyError for a missing name."""
    if len(names) == 1:
        only = names[0]
        return lambda d: (d[only],)
    if not names:
        return lambda d: ()
    return operator.itemgetter(*names)


@dataclass
class EventRows:
    """Validated rows in ``layout.event_columns`` order; in-batch duplicates dropped."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    in_batch_duplicates: int = 0


class _EventChecker:
    def __init__(self, layout: ModelLayout) -> None:
        spec = layout.spec
        self.layout = layout
        self.features = [(f.name, _FEATURE_CHECKS[f.type]) for f in spec.features]
        self.all_features = _getter([f.name for f in spec.features])
        self.numeric_features = _getter(
            [f.name for f in spec.features if f.type is FeatureType.NUMERIC]
        )
        self.fast_types = tuple(_FAST_TYPES[f.type] for f in spec.features)
        self.string_features = _getter(
            [f.name for f in spec.features if _FAST_TYPES[f.type] is str]
        )
        self.feature_names = frozenset(c.source for c in layout.features)
        self.segment_keys = [c.source for c in layout.segments]
        self.segment_set = frozenset(self.segment_keys)
        self.classes = frozenset(spec.class_list)
        self.classification = spec.is_classification
        self.multiclass = len(layout.scores) > 1
        self.binary = len(layout.scores) == 1
        self.has_score = bool(layout.scores)
        self.scores_required = spec.scores

    def prediction(self, v: object) -> object:
        if type(v) is str and self.classification and v in self.classes:
            return v
        if v is None:
            raise _Bad("required")
        if not self.classification:
            return _float(v)
        label = normalize_class(v)
        if label is None or label not in self.classes:
            raise _Bad(f"must be one of the model's classes {sorted(self.classes)}")
        return label

    def scores(self, ev: dict[str, Any], errors: _Errors, loc: Loc) -> list[float | None]:
        n = len(self.layout.scores)
        score, scores = ev.get("score"), ev.get("scores")
        if self.binary and type(score) is float and 0.0 <= score <= 1.0 and scores is None:
            return [score]
        if not self.has_score:
            if score is not None or scores is not None:
                errors.add(
                    (*loc, "score" if score is not None else "scores"),
                    "regression models take no scores",
                )
            return []
        if self.multiclass:
            if score is not None:
                errors.add((*loc, "score"), "multiclass models send 'scores': {class: probability}")
            if scores is None:
                if self.scores_required:
                    errors.add((*loc, "scores"), "required by the model's schema")
                return [None] * n
            if not isinstance(scores, dict):
                errors.add((*loc, "scores"), "must be an object {class: probability}", scores)
                return [None] * n
            out: list[float | None] = []
            for cls in self.layout.spec.class_list:
                out.append(self._probability(scores.get(cls), errors, (*loc, "scores", cls), True))
            for key in scores.keys() - self.classes:
                errors.add((*loc, "scores", key), "not one of the model's classes")
            return out
        if scores is not None:
            errors.add(
                (*loc, "scores"), "binary models send 'score': probability of the positive class"
            )
        if score is None and not self.scores_required:
            return [None]
        return [self._probability(score, errors, (*loc, "score"), True)]

    @staticmethod
    def _probability(v: object, errors: _Errors, loc: Loc, required: bool) -> float | None:
        if v is None:
            if required:
                errors.add(loc, "required")
            return None
        try:
            p = _float(v)
        except _Bad as bad:
            errors.add(loc, str(bad), v)
            return None
        if p is not None and not 0.0 <= p <= 1.0:
            errors.add(loc, "must be a probability between 0 and 1", v)
        return p


_ID_RULE = f"a non-empty string of at most {REQUEST_ID_MAX} characters"


def _request_id(v: object) -> str | None:
    if type(v) is int:
        v = str(v)
    if type(v) is str and 0 < len(v) <= REQUEST_ID_MAX and NUL not in v:
        return v
    return None


def _id_problem(v: object, required: bool) -> str:
    """Why ``v`` is not an id :func:`_request_id` takes."""
    if type(v) is str and NUL in v:
        return NUL_MESSAGE
    return f"required, {_ID_RULE}" if required else _ID_RULE


def validate_events(layout: ModelLayout, version_id: int, events: Sequence[object]) -> EventRows:
    check = _EventChecker(layout)
    errors = _Errors()
    received = now_us()
    out = EventRows()
    seen: set[str] = set()
    for i, ev in enumerate(events):
        if errors.full:
            break
        loc: Loc = ("events", i)
        if type(ev) is not dict:
            errors.add(loc, "must be an object", ev)
            continue
        if len(ev) > len(_EVENT_KEYS) or not _EVENT_KEYS.issuperset(ev):
            for key in sorted(set(ev) - _EVENT_KEYS):
                errors.add((*loc, key), "unknown field")
        rid = _request_id(ev.get("request_id"))
        if rid is None:
            raw_id = ev.get("request_id")
            errors.add((*loc, "request_id"), _id_problem(raw_id, True), raw_id)
        ts = parse_timestamp_us(ev.get("timestamp"))
        if ts is None:
            errors.add(
                (*loc, "timestamp"),
                "required, an RFC 3339 string or Unix seconds",
                ev.get("timestamp"),
            )
        try:
            prediction = check.prediction(ev.get("prediction"))
        except _Bad as bad:
            errors.add((*loc, "prediction"), str(bad), ev.get("prediction"))
            prediction = None
        scores = check.scores(ev, errors, loc)
        features = _features(check, ev.get("features"), errors, loc)
        segments = _segments(check, ev.get("segment"), errors, loc)
        if errors.items:
            continue
        if rid in seen:
            out.in_batch_duplicates += 1
            continue
        seen.add(rid)  # type: ignore[arg-type]
        out.rows.append((version_id, rid, ts, received, prediction, *scores, *features, *segments))
    errors.raise_if_any()
    return out


def _features(check: _EventChecker, feats: object, errors: _Errors, loc: Loc) -> Sequence[object]:
    if type(feats) is dict and len(feats) == len(check.features):
        # Fast path: every feature present with the type its check passes through, so
        # the values are stored as they are (a NaN or infinity makes the sum non-finite).
        try:
            fast = check.all_features(feats)
        except KeyError:
            pass
        else:
            if (
                tuple(map(type, fast)) == check.fast_types
                and math.isfinite(sum(check.numeric_features(feats)))
                and NUL not in "".join(check.string_features(feats))
            ):
                return fast
    if type(feats) is not dict:
        errors.add((*loc, "features"), "required, must be an object", feats)
        return []
    values: list[object] = []
    for name, conv in check.features:
        try:
            values.append(conv(feats.get(name)))
        except _Bad as bad:
            errors.add((*loc, "features", name), str(bad), feats.get(name))
    if len(feats) > len(check.features) or not check.feature_names.issuperset(feats):
        for key in sorted(set(feats) - check.feature_names):
            errors.add((*loc, "features", key), "not in the model's schema")
    return values


def _segments(check: _EventChecker, seg: object, errors: _Errors, loc: Loc) -> list[object]:
    if seg is None:
        return [None] * len(check.segment_keys)
    if type(seg) is not dict:
        errors.add((*loc, "segment"), "must be an object of tag: value", seg)
        return []
    for key in sorted(set(seg) - check.segment_set):
        errors.add(
            (*loc, "segment", key),
            f"not a segment key of the model (declared: {check.segment_keys})",
        )
    values: list[object] = []
    for key in check.segment_keys:
        try:
            values.append(_category(seg.get(key)))
        except _Bad as bad:
            errors.add((*loc, "segment", key), str(bad), seg.get(key))
    return values


@dataclass
class LabelRows:
    rows: list[tuple[str, object, int, int]] = field(default_factory=list)
    in_batch_duplicates: int = 0


def validate_labels(layout: ModelLayout, labels: Sequence[object]) -> LabelRows:
    """Rows of (request_id, label, ts_us, received_us); later duplicates in a batch win."""
    check = _EventChecker(layout)
    errors = _Errors()
    received = now_us()
    by_id: dict[str, tuple[str, object, int, int]] = {}
    allowed = {"request_id", "label", "timestamp"}
    for i, item in enumerate(labels):
        if errors.full:
            break
        loc: Loc = ("labels", i)
        if type(item) is not dict:
            errors.add(loc, "must be an object", item)
            continue
        for key in sorted(set(item) - allowed):
            errors.add((*loc, key), "unknown field")
        rid = _request_id(item.get("request_id"))
        if rid is None:
            raw_id = item.get("request_id")
            errors.add((*loc, "request_id"), _id_problem(raw_id, True), raw_id)
        raw_ts = item.get("timestamp")
        ts = received if raw_ts is None else parse_timestamp_us(raw_ts)
        if ts is None:
            errors.add((*loc, "timestamp"), "an RFC 3339 string or Unix seconds", raw_ts)
        try:
            label = check.prediction(item.get("label"))
        except _Bad as bad:
            errors.add((*loc, "label"), str(bad), item.get("label"))
            continue
        if rid is not None and ts is not None:
            by_id[rid] = (rid, label, ts, received)
    errors.raise_if_any()
    return LabelRows(list(by_id.values()), len(labels) - len(by_id))


@dataclass
class UsageRows:
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def validate_usage(version_id: int, samples: Sequence[object]) -> UsageRows:
    """Rows of (version_id, ts_us, received_us, *USAGE_FIELDS, extra_json, sample_id).

    ``sample_id`` is optional; a sample resent with the same id is a duplicate."""
    errors = _Errors()
    received = now_us()
    out = UsageRows()
    for i, item in enumerate(samples):
        if errors.full:
            break
        loc: Loc = ("samples", i)
        if type(item) is not dict:
            errors.add(loc, "must be an object", item)
            continue
        ts = parse_timestamp_us(item.get("timestamp"))
        if ts is None:
            errors.add(
                (*loc, "timestamp"),
                "required, an RFC 3339 string or Unix seconds",
                item.get("timestamp"),
            )
        extra: dict[str, float] = {}
        sample_id = item.get("sample_id")
        rid = None if sample_id is None else _request_id(sample_id)
        if sample_id is not None and rid is None:
            errors.add((*loc, "sample_id"), _id_problem(sample_id, False), sample_id)
        for key, v in item.items():
            if key in ("timestamp", "sample_id"):
                continue
            try:
                num = _float(v)
            except _Bad as bad:
                errors.add((*loc, key), str(bad), v)
                continue
            if num is not None and num < 0:
                errors.add((*loc, key), "must not be negative", v)
            elif key not in USAGE_FIELDS and num is not None:
                extra[key] = num
        values = [item.get(k) for k in USAGE_FIELDS]
        if all(v is None for v in values) and not extra:
            errors.add(
                loc, f"a sample needs at least one measurement ({', '.join(USAGE_FIELDS)}, ...)"
            )
        if not errors.items:
            floats = [None if v is None else float(v) for v in values]
            extra_json = orjson.dumps(extra).decode() if extra else None
            out.rows.append((version_id, ts, received, *floats, extra_json, rid))
    errors.raise_if_any()
    return out
