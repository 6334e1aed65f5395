"""Hypothesis over the ingest decoders: the typed fast path (collector.wire) and the general
validator (collector.validation).

Whatever the body, neither crashes: the validator either returns rows or raises
``ValidationFailed`` (``PayloadTooLargeError`` for too many items) whose errors name a
field; the fast path returns rows or declines. Where the fast path accepts, the validator
accepts with the same rows; where the validator refuses, the fast path declines; plain
batches are accepted by both. End to end, ``Ingestor.predictions_json`` (fast path first)
and ``Ingestor.predictions`` (validator only) accept and refuse the same bodies.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ingest import Ingestor
from collector.validation import parse_envelope, validate_events, validate_labels, validate_usage
from collector.wire import event_decoder
from modelwatch.domain import ModelSpec
from modelwatch.errors import FieldError, ModelwatchError, PayloadTooLargeError, ValidationFailed
from modelwatch.http import parse_json
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC

BINARY = ModelLayout(1, ModelSpec.model_validate(CHURN_SPEC))
REGRESSION = ModelLayout(
    2,
    ModelSpec.model_validate(
        {
            "name": "eta",
            "task": "regression",
            "features": [{"name": "km", "type": "numeric"}, {"name": "zone", "type": "text"}],
            "segments": ["region"],
        }
    ),
)
LAYOUTS = [BINARY, REGRESSION]
FUZZ = settings(
    max_examples=150,
    database=None,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- values: edge cases of every JSON type --------------------------------------------

_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e308, -1e308, 5e-324, 0.5, 1.0000001]
)
_ints = st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from(
    [0, 1, 2, -1, 2**53 + 1, 2**63, -(2**63) - 1, 1_800_000_000]
)
_texts = (
    st.text(max_size=20)
    | st.sampled_from(["", "\x00", "a\x00b", "\ud7ff", "💥", "é" * 129, "0", "1", "pro", "DE"])
    | st.sampled_from(["x" * 20_000, "é" * 5_000])
)
_scalars = st.none() | st.booleans() | _ints | _floats | _texts
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=20,
)


def _deep(depth: int) -> Any:
    value: Any = 1.0
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


_stamps = st.sampled_from(
    [
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:00:00.123456+02:00",
        "2026-11-20 10:00:00",
        "2026-11-20t10:00:00z",
        "yesterday",
        "",
        1_800_000_000,
        1_800_000_000.5,
        -5,
        10**12,
        2**64,
        math.nan,
        math.inf,
        True,
        None,
    ]
)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes any JSON value."""
    return st.one_of(valid, valid, valid, _json)


def _feature_value(kind: str) -> st.SearchStrategy[Any]:
    valid = {
        "numeric": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        "categorical": st.sampled_from(["pro", "basic", "", "ünï"]) | st.text(max_size=8),
        "boolean": st.booleans(),
        "text": st.text(max_size=30),
    }[kind]
    return _maybe(valid | st.none())


def _events(layout: ModelLayout, plain: bool) -> st.SearchStrategy[dict[str, Any]]:
    spec = layout.spec
    pick = (lambda s: s) if plain else _maybe
    feature_values = {f.name: _feature_value(f.type.value) for f in spec.features}
    if plain:
        feature_values = {
            f.name: {
                "numeric": st.floats(-1e9, 1e9) | st.none(),
                "categorical": st.sampled_from(["pro", "basic", "ünï", ""]) | st.none(),
                "boolean": st.booleans() | st.none(),
                "text": st.text(max_size=30).filter(lambda s: "\x00" not in s) | st.none(),
            }[f.type.value]
            for f in spec.features
        }
    if spec.is_classification:
        prediction = pick(st.sampled_from(spec.class_list))
    else:
        prediction = pick(st.floats(-1e6, 1e6))
    fields: dict[str, Any] = {
        "request_id": pick(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)),
        "timestamp": st.sampled_from(["2026-11-20T10:00:00Z", 1_800_000_000]) if plain else _stamps,
        "features": st.fixed_dictionaries(feature_values)
        if plain
        else _maybe(st.fixed_dictionaries({}, optional=feature_values)),
        "prediction": prediction,
    }
    optional: dict[str, Any] = {}
    if spec.task.value == "binary":
        optional["score"] = pick(st.floats(0.0, 1.0) | st.none())
    if spec.segments:
        segment = st.fixed_dictionaries(
            {}, optional={k: pick(st.sampled_from(["DE", "fr"])) for k in spec.segments}
        )
        optional["segment"] = segment if plain else _maybe(segment | st.none())
    if not plain:
        optional["colour"] = _json
    return st.fixed_dictionaries(fields, optional=optional)


def _batch(layout: ModelLayout, plain: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(_events(layout, plain), min_size=1, max_size=8)


# --- the two paths ----------------------------------------------------------------------


def _fast(layout: ModelLayout, body: bytes) -> list[tuple[Any, ...]] | None:
    decoder = event_decoder(layout)
    assert decoder is not None
    batch = decoder.decode(body, layout.spec.name, 1000)
    if batch is None:
        return None
    rows = decoder.rows(batch, 7)
    return None if rows is None else rows.rows


def _slow(layout: ModelLayout, body: bytes) -> list[tuple[Any, ...]] | ValidationFailed:
    """The general path as the ingestor takes it: parse, check the envelope, validate."""
    payload: Any = None
    try:
        payload = parse_json(body)
        _, events = parse_envelope(payload, {"model": str, "version": str}, "events", 1000)
        return validate_events(layout, 7, events).rows
    except ValidationFailed as exc:
        _assert_names_fields(exc.errors, payload)
        return exc
    except PayloadTooLargeError:
        raise AssertionError("no batch here is over the item limit") from None


def _assert_names_fields(errors: list[FieldError], payload: Any) -> None:
    assert errors
    for e in errors:
        assert all(isinstance(part, (str, int)) for part in e.loc), e
        assert e.msg
        # Only a body that is not an object is refused as a whole.
        assert e.loc or not isinstance(payload, dict), e
        orjson.dumps(e.as_dict())  # every error renders as JSON


def _dumps(value: Any) -> bytes:
    """JSON as a client might send it: big integers as they are, NaN and Infinity as the
    non-standard literals, lone surrogates escaped (the parser refuses the last two)."""
    return json.dumps(value, allow_nan=True).encode()


def _body(layout: ModelLayout, events: Any) -> bytes:
    return _dumps({"model": layout.spec.name, "version": "v1", "events": events})


def _without_received(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row[:3] + row[4:] for row in rows]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return orjson.dumps(_without_received(a)) == orjson.dumps(_without_received(b))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.spec.name)
@FUZZ
@given(data=st.data())
def test_the_fast_path_accepts_only_what_the_validator_accepts(
    layout: ModelLayout, data: st.DataObject
) -> None:
    events = data.draw(_batch(layout, plain=False))
    body = _body(layout, events)
    slow = _slow(layout, body)
    fast = _fast(layout, body)
    if isinstance(slow, ValidationFailed):
        # A NUL reaches the decoder only if the ingestor's guard lets it (see the end-to-end test).
        if b"\\u0000" not in body:
            assert fast is None, slow
    elif fast is not None:
        assert _same(fast, slow)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.spec.name)
@FUZZ
@given(data=st.data())
def test_plain_batches_are_accepted_by_both_paths_with_the_same_rows(
    layout: ModelLayout, data: st.DataObject
) -> None:
    events = data.draw(_batch(layout, plain=True))
    body = _body(layout, events)
    slow = _slow(layout, body)
    fast = _fast(layout, body)
    assert not isinstance(slow, ValidationFailed), slow.errors
    assert fast is not None
    assert _same(fast, slow)


@FUZZ
@given(payload=_json)
def test_any_json_is_refused_with_named_fields_never_a_crash(payload: Any) -> None:
    for item in (
        payload,
        {"model": "churn", "version": "v1", "events": payload},
        {"model": "churn", "version": "v1", "events": [payload]},
        {"model": "churn", "version": "v1", "events": [{"features": payload}]},
    ):
        body = _dumps(item)
        slow, fast = _slow(BINARY, body), _fast(BINARY, body)
        if fast is not None:
            assert not isinstance(slow, ValidationFailed) and _same(fast, slow)


@FUZZ
@given(payload=_json)
def test_labels_and_usage_refuse_with_named_fields(payload: Any) -> None:
    for items in ([payload], [{"request_id": "a", "label": payload, "timestamp": payload}]):
        try:
            validate_labels(BINARY, items)
        except ValidationFailed as exc:
            _assert_names_fields(exc.errors, {})
    for samples in ([payload], [{"timestamp": payload, "latency_ms": payload, "x": payload}]):
        try:
            validate_usage(7, samples)
        except ValidationFailed as exc:
            _assert_names_fields(exc.errors, {})


def _nested(depth: int) -> bytes:
    return b'{"model": "churn", "version": "v1", "events": [' + b"[" * depth + b"]" * depth + b"]}"


@FUZZ
@given(
    body=st.binary(max_size=200)
    | st.sampled_from([b"{" * 5000, b"[" * 100_000, b"1e99999", _nested(500), _nested(5000)])
)
def test_any_bytes_are_refused_without_a_crash(body: bytes) -> None:
    slow, fast = _slow(BINARY, body), _fast(BINARY, body)
    if fast is not None:
        assert not isinstance(slow, ValidationFailed) and _same(fast, slow)


def test_too_many_items_is_a_size_error_not_a_crash() -> None:
    payload = {"model": "m", "version": "v", "events": [{}] * 3}
    with pytest.raises(PayloadTooLargeError):
        parse_envelope(payload, {"model": str, "version": str}, "events", 2)


# --- end to end: the ingestor's routing -------------------------------------------------


@pytest.fixture(scope="module")
def ingestor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingestor]:
    path: Path = tmp_path_factory.mktemp("decoder") / "modelwatch.db"
    store = Store(f"sqlite:///{path}")
    upgrade(store)
    registry = Registry(store)
    for layout in LAYOUTS:
        model = registry.create_model(layout.spec, "test")
        registry.create_version(model, "v1", None, "test")
    yield Ingestor(store, registry)
    store.dispose()


_ids = itertools.count()


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.spec.name)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_the_ingestor_accepts_the_same_bodies_by_either_path(
    ingestor: Ingestor, layout: ModelLayout, data: st.DataObject
) -> None:
    events = data.draw(_batch(layout, plain=data.draw(st.booleans())))
    for ev in events:  # fresh ids: the comparison is about validity, not duplicates
        if isinstance(ev.get("request_id"), str):
            ev["request_id"] = f"{ev['request_id']}-{next(_ids)}"
    body = _body(layout, events)

    def outcome(call: Any) -> Any:
        try:
            return call().received
        except ModelwatchError as exc:
            assert isinstance(exc, ValidationFailed), exc
            return "refused"

    via_fast = outcome(lambda: ingestor.predictions_json(body))
    for ev in events:
        if isinstance(ev.get("request_id"), str):
            ev["request_id"] += "-again"
    again = _body(layout, events)
    via_validator = outcome(lambda: ingestor.predictions(parse_json(again)))
    assert via_fast == via_validator
