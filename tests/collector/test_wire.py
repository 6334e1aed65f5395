"""The typed fast path accepts exactly what the general validator accepts, with the same rows.

Every batch here goes through both :mod:`collector.wire` and
:func:`collector.validation.validate_events`: a plain batch must give identical
rows (but for the time received), and a batch the validator refuses must make the
fast path decline, never store something the validator would refuse.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest

from collector.ingest import Ingestor
from collector.validation import validate_events
from collector.wire import event_decoder, model_hint
from modelwatch.domain import ModelSpec
from modelwatch.errors import ValidationFailed
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC

BINARY = ModelLayout(1, ModelSpec.model_validate(CHURN_SPEC))
SCORED = ModelLayout(
    2,
    ModelSpec.model_validate(
        {**CHURN_SPEC, "name": "scored", "classes": ["no", "yes"], "scores": True}
    ),
)
REGRESSION = ModelLayout(
    3,
    ModelSpec.model_validate(
        {
            "name": "eta",
            "task": "regression",
            "features": [{"name": "distance-km.v2", "type": "numeric"}],
            "segments": ["region", "tier"],
        }
    ),
)
MULTICLASS = ModelLayout(
    4,
    ModelSpec.model_validate(
        {
            "name": "kind",
            "task": "multiclass",
            "classes": ["a", "b", "c"],
            "features": [{"name": "x", "type": "numeric"}],
        }
    ),
)


def _random_event(layout: ModelLayout, rng: random.Random, i: int) -> dict[str, Any]:
    spec = layout.spec
    features: dict[str, Any] = {}
    for f in spec.features:
        if rng.random() < 0.1:
            continue  # a missing feature is stored as null
        roll = rng.random()
        if roll < 0.1:
            features[f.name] = None
        elif f.type.value == "numeric":
            features[f.name] = rng.choice([rng.uniform(-1e6, 1e6), rng.randint(-(10**12), 10**12)])
        elif f.type.value == "boolean":
            features[f.name] = rng.random() < 0.5
        else:
            features[f.name] = rng.choice(["pro", "basic", "", "ünï", "x" * 300])
    stamp = rng.choice(
        [
            "2026-11-20T10:00:00Z",
            f"2026-11-20T10:{i % 60:02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z",
            "2026-11-20T12:00:00.5+02:00",
            "2026-11-20T10:00:00",
            "2026-11-20 10:00:00.123",
            rng.randint(1_700_000_000, 1_800_000_000),
            rng.uniform(1_700_000_000, 1_800_000_000),
        ]
    )
    event: dict[str, Any] = {
        "request_id": f"r{rng.randint(0, 40)}" if rng.random() < 0.2 else f"req-{i}-ü",
        "timestamp": stamp,
        "features": features,
    }
    if spec.is_classification:
        classes = spec.class_list
        event["prediction"] = (
            rng.choice(classes) if not classes[0].isdigit() else rng.choice([*classes, 0, 1])
        )
        if rng.random() < 0.8 or spec.scores:
            event["score"] = rng.choice([rng.random(), 0, 1, 0.0, 1.0])
        elif rng.random() < 0.5:
            event["score"] = None
    else:
        event["prediction"] = rng.choice([rng.uniform(0, 100), rng.randint(0, 100)])
    if spec.segments and rng.random() < 0.7:
        event["segment"] = {k: rng.choice(["DE", None, "fr"]) for k in spec.segments[:1]}
    elif rng.random() < 0.3:
        event["segment"] = None
    return event


def _body(layout: ModelLayout, events: list[Any], **envelope: Any) -> bytes:
    return orjson.dumps({"model": layout.spec.name, "version": "v1", "events": events, **envelope})


def _fast_rows(layout: ModelLayout, body: bytes) -> list[tuple[Any, ...]] | None:
    decoder = event_decoder(layout)
    assert decoder is not None
    batch = decoder.decode(body, layout.spec.name, 100_000)
    if batch is None:
        return None
    rows = decoder.rows(batch, 7)
    return None if rows is None else rows.rows


def _without_received(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row[:3] + row[4:] for row in rows]


@pytest.mark.parametrize("layout", [BINARY, SCORED, REGRESSION], ids=lambda lay: lay.spec.name)
@pytest.mark.parametrize("seed", range(20))
def test_plain_batches_give_the_validators_rows(layout: ModelLayout, seed: int) -> None:
    rng = random.Random(seed)
    events = [_random_event(layout, rng, i) for i in range(rng.randint(1, 60))]
    fast = _fast_rows(layout, _body(layout, events))
    slow = validate_events(layout, 7, orjson.loads(orjson.dumps(events)))
    assert fast is not None
    assert _without_received(fast) == _without_received(slow.rows)
    assert [type(v) for row in fast for v in row] == [type(v) for row in slow.rows for v in row]


def _mutations() -> list[tuple[str, Any]]:
    """(what, change to one event); each makes the validator refuse the batch."""

    def feature(name: str, value: Any) -> Any:
        return lambda ev: ev["features"].__setitem__(name, value)

    def field(name: str, value: Any) -> Any:
        return lambda ev: ev.__setitem__(name, value)

    return [
        ("bool numeric", feature("age", True)),
        ("string numeric", feature("age", "30")),
        ("list numeric", feature("age", [1])),
        ("number boolean", feature("active", 2)),
        ("number text", feature("note", 1)),
        ("object category", feature("plan", {"a": 1})),
        ("unknown feature", feature("height", 1.0)),
        ("features null", field("features", None)),
        ("features list", field("features", [1.0])),
        ("no features", lambda ev: ev.pop("features")),
        ("unknown field", field("colour", "red")),
        ("empty request id", field("request_id", "")),
        ("long request id", field("request_id", "é" * 129)),
        ("null request id", field("request_id", None)),
        ("no request id", lambda ev: ev.pop("request_id")),
        ("bad timestamp", field("timestamp", "yesterday")),
        ("lowercase timestamp", field("timestamp", "2026-11-20t10:00:00z")),
        ("negative timestamp", field("timestamp", -5)),
        ("far timestamp", field("timestamp", 10**12)),
        ("bool timestamp", field("timestamp", True)),
        ("no timestamp", lambda ev: ev.pop("timestamp")),
        ("unknown class", field("prediction", "maybe")),
        ("class 2", field("prediction", 2)),
        ("float class", field("prediction", 0.5)),
        ("null prediction", field("prediction", None)),
        ("score above 1", field("score", 1.5)),
        ("score below 0", field("score", -0.1)),
        ("string score", field("score", "0.5")),
        ("scores on binary", field("scores", {"0": 0.5})),
        ("unknown segment", field("segment", {"planet": "mars"})),
        ("segment list", field("segment", ["DE"])),
        ("object segment value", field("segment", {"country": {"x": 1}})),
    ]


@pytest.mark.parametrize(("what", "change"), _mutations(), ids=[m[0] for m in _mutations()])
@pytest.mark.parametrize("position", [0, 7, 19])
def test_batches_the_validator_refuses_are_declined(what: str, change: Any, position: int) -> None:
    rng = random.Random(position)
    events = [_random_event(BINARY, rng, i) for i in range(20)]
    for ev in events:
        ev["request_id"] = f"unique-{id(ev)}"
    events[position] = bad = copy.deepcopy(events[position])
    change(bad)
    with pytest.raises(ValidationFailed):
        validate_events(BINARY, 7, orjson.loads(orjson.dumps(events)))
    assert _fast_rows(BINARY, _body(BINARY, events)) is None


def test_a_duplicate_that_is_invalid_still_refuses_the_batch() -> None:
    first = {"request_id": "a", "timestamp": 1_800_000_000, "features": {}, "prediction": "1"}
    events = [first, {**first, "score": 7.0}]
    with pytest.raises(ValidationFailed):
        validate_events(BINARY, 7, events)
    assert _fast_rows(BINARY, _body(BINARY, events)) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "churn", "version": "v1", "events": []}',
        b'{"model": "churn", "version": "v1"}',
        b'{"model": "churn", "version": 1, "events": [{}]}',
        b'{"model": "churn", "version": "v1", "events": [], "extra": 1}',
        b'{"model": "churn", "version": "v1", "events": [{"score": NaN}]}',
        b'{"model": "churn", "version": "v1", "events": [{"request_id": "\\ud800"}]}',
        b'{"model": "churn", "version": "v1", "events": [{"score": 1e999}]}',
        b'{"model": "other", "version": "v1", "events": [{}]}',
        b"[]",
        b"",
    ],
)
def test_malformed_envelopes_are_declined(body: bytes) -> None:
    assert _fast_rows(BINARY, body) is None


def test_scores_required_and_multiclass() -> None:
    event = {"request_id": "a", "timestamp": 1_800_000_000, "features": {}, "prediction": "yes"}
    assert _fast_rows(SCORED, _body(SCORED, [event])) is None  # the validator: score required
    assert _fast_rows(SCORED, _body(SCORED, [{**event, "score": 0.9}])) is not None
    assert event_decoder(MULTICLASS) is None  # multiclass batches take the general path


def test_the_model_hint_is_only_a_hint() -> None:
    assert model_hint(b'{"version": "v1", "model" : "churn", "events": []}') == "churn"
    assert model_hint(b'{"model": "ch\\u0075rn"}') is None
    assert model_hint(b'{"model": 3}') is None
    # A feature called "model" may come first: the decoded batch must name the model.
    body = b'{"events": [{"features": {"model": "eta"}}], "model": "churn", "version": "v1"}'
    assert model_hint(body) == "eta"
    decoder = event_decoder(REGRESSION)
    assert decoder is not None and decoder.decode(body, "eta", 10) is None


def test_decoders_are_built_once_per_layout() -> None:
    assert event_decoder(BINARY) is event_decoder(BINARY)
    same_spec = ModelLayout(BINARY.model_id, BINARY.spec)
    assert event_decoder(same_spec) is not event_decoder(BINARY)


@pytest.fixture
def ingestor(store: Store) -> Ingestor:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", None, "test")
    return Ingestor(store, registry)


def _events(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"q{i}",
            "timestamp": "2026-11-20T10:00:00Z",
            "features": {"age": i, "plan": "pro"},
            "prediction": "1",
            "score": 0.5,
            **overrides,
        }
        for i in range(n)
    ]


def test_json_bodies_store_what_payloads_store(ingestor: Ingestor) -> None:
    plain = orjson.dumps({"model": "churn", "version": "v1", "events": _events(5)})
    assert ingestor.predictions_json(plain).as_dict() == {
        "received": 5, "accepted": 5, "duplicates": 0, "updated": 0,
    }  # fmt: skip
    # Integer categories and request ids take the general path, with the same outcome.
    general = _events(7, features={"plan": 3})
    general[6]["request_id"] = 6
    body = orjson.dumps({"model": "churn", "version": "v1", "events": general})
    assert ingestor.predictions_json(body).as_dict() == {
        "received": 7, "accepted": 2, "duplicates": 5, "updated": 0,
    }  # fmt: skip


def test_json_bodies_are_refused_with_the_validators_errors(ingestor: Ingestor) -> None:
    events = _events(3)
    events[2]["features"] = {"age": "old"}
    body = orjson.dumps({"model": "churn", "version": "v1", "events": events})
    with pytest.raises(ValidationFailed) as fast:
        ingestor.predictions_json(body)
    with pytest.raises(ValidationFailed) as general:
        ingestor.predictions(orjson.loads(body))
    assert [e.as_dict() for e in fast.value.errors] == [e.as_dict() for e in general.value.errors]
    assert fast.value.errors[0].as_dict()["loc"] == ["events", 2, "features", "age"]
