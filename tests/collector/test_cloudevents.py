"""POST /v1/cloudevents: KServe's (and Seldon Core's) request-logger CloudEvents become
prediction events, on SQLite and PostgreSQL.

The payloads are those KServe documents for its InferenceLogger (the sklearn-iris
example: binary content mode, one ``ce-id`` for request and response) and the Open
Inference Protocol's tensors; Seldon Core's executor gives each half its own ``ce-id``
and the inference's in ``ce-requestid``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.cloudevents import CloudEventsReceiver
from modelwatch.app import create_app
from modelwatch.config import Config, load_config
from modelwatch.errors import ConfigError
from modelwatch.settings import Settings
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
IRIS_SPEC: dict[str, Any] = {
    "name": "iris",
    "task": "multiclass",
    "classes": ["0", "1", "2"],
    "features": [
        {"name": "sepal_length", "type": "numeric"},
        {"name": "sepal_width", "type": "numeric"},
        {"name": "petal_length", "type": "numeric"},
        {"name": "petal_width", "type": "numeric"},
    ],
}
# KServe's logger docs: the sklearn-iris request and its response.
IRIS_REQUEST = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
IRIS_RESPONSE = {"predictions": [1, 1]}
ID = "0009174a-24a8-4603-b098-09c8799950e9"
REQUEST_TIME = "2021-04-10T00:23:26.0789529Z"
RESPONSE_TIME = "2021-04-10T00:23:26.080736102Z"
REQUEST_US = 1618014206078952
CONFIG = {
    "cloudevents": {
        "pair_timeout": "10m",
        "services": {
            "sklearn-iris": {"model": "iris", "version": "v1"},
            "prod/churn-isvc": {"model": "churn", "version": "v2"},
            "churn-isvc": {"model": "churn", "version": "v1"},
        },
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(store: Store, clock: Clock) -> Iterator[TestClient]:
    settings = Settings(database_url=store.url, max_body_bytes=1024 * 1024)
    app = create_app(settings, store, Config.model_validate(CONFIG))
    app.state.cloudevents.clock = clock
    with TestClient(app) as client:
        for spec in (IRIS_SPEC, CHURN_SPEC):
            assert client.post("/v1/models", json=spec).status_code == 201
            for version in ("v1", "v2"):
                body = {"version": version}
                r = client.post(f"/v1/models/{spec['name']}/versions", json=body)
                assert r.status_code == 201
        yield client


def binary(
    kind: str = REQUEST,
    data: object = IRIS_REQUEST,
    *,
    ce_id: str = ID,
    time: str = REQUEST_TIME,
    service: str = "sklearn-iris",
    **extensions: str,
) -> dict[str, Any]:
    """The headers and body KServe's logger sends (binary content mode)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-source": "http://localhost:9081/",
        "ce-type": kind,
        "ce-time": time,
        "ce-inferenceservicename": service,
        "ce-namespace": "default",
        "ce-component": "predictor",
        "ce-endpoint": "",
        "ce-metadata": "{}",
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in extensions.items()},
    }
    return {"headers": headers, "content": orjson.dumps(data)}


def structured(
    kind: str, data: object, *, ce_id: str = ID, time: str = REQUEST_TIME, **attrs: str
) -> dict[str, Any]:
    """The same event in structured content mode."""
    event = {
        "specversion": "1.0",
        "id": ce_id,
        "source": "http://localhost:9081/",
        "type": kind,
        "time": time,
        "datacontenttype": "application/json",
        "inferenceservicename": "churn-isvc",
        "namespace": "default",
        "component": "predictor",
        "endpoint": "",
        **attrs,
        "data": data,
    }
    headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
    return {"headers": headers, "content": orjson.dumps(event)}


def post(api: TestClient, event: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = api.post("/v1/cloudevents", **event)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def stored(store: Store, model: str) -> list[dict[str, Any]]:
    """Every stored event of ``model``: version, request id, time, features by name,
    prediction and scores."""
    record = Registry(store).get_model(model)
    layout = record.layout
    versions = {v.id: v.version for v in Registry(store).list_versions(record)}
    with store.read() as conn:
        rows = conn.execute(select(layout.events).order_by(layout.events.c.request_id)).all()
    out = []
    for row in rows:
        m = row._mapping
        out.append(
            {
                "version": versions[m["version_id"]],
                "request_id": m["request_id"],
                "ts_us": m["ts_us"],
                "features": {c.source: m[c.name] for c in layout.features},
                "prediction": m["prediction"],
                "scores": {c.source: m[c.name] for c in layout.scores},
            }
        )
    return out


def waiting(store: Store) -> list[tuple[str, str]]:
    with store.read() as conn:
        rows = conn.execute(select(t.cloudevent_halves.c.kind, t.cloudevent_halves.c.model))
        return sorted((r[0], r[1]) for r in rows)


def test_kserve_v1_pair_in_binary_mode_becomes_one_event_per_instance(
    api: TestClient, store: Store
) -> None:
    assert post(api, binary()) == {
        "status": "waiting",
        "received": 2,
        "accepted": 0,
        "duplicates": 0,
    }
    assert stored(store, "iris") == []
    assert waiting(store) == [("request", "iris")]
    answer = post(api, binary(RESPONSE, IRIS_RESPONSE, time=RESPONSE_TIME))
    assert answer == {"status": "joined", "received": 2, "accepted": 2, "duplicates": 0}
    assert stored(store, "iris") == [
        {
            "version": "v1",
            "request_id": f"{ID}:0",
            "ts_us": REQUEST_US,  # the request's time
            "features": {
                "sepal_length": 6.8,
                "sepal_width": 2.8,
                "petal_length": 4.8,
                "petal_width": 1.4,
            },
            "prediction": "1",
            "scores": {"score_0": None, "score_1": None, "score_2": None},
        },
        {
            "version": "v1",
            "request_id": f"{ID}:1",
            "ts_us": REQUEST_US,
            "features": {
                "sepal_length": 6.0,
                "sepal_width": 3.4,
                "petal_length": 4.5,
                "petal_width": 1.6,
            },
            "prediction": "1",
            "scores": {"score_0": None, "score_1": None, "score_2": None},
        },
    ]
    assert waiting(store) == []
    assert api.get("/v1/models/iris").json()["versions"][0]["events"]["count"] == 2


def test_v2_tensors_per_feature_in_structured_mode_response_first(
    api: TestClient, store: Store
) -> None:
    """Open Inference Protocol, one tensor per feature (MLServer's pandas codec), a
    response carrying labels and probabilities, and the response arriving first."""
    request = {
        "id": "42",
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [41.0]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
            {"name": "active", "shape": [1, 1], "datatype": "BOOL", "data": [[True]]},
            {"name": "note", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
        ],
    }
    response = {
        "model_name": "churn",
        "id": "42",
        "outputs": [
            {"name": "predict", "shape": [1, 1], "datatype": "INT64", "data": [1]},
            {"name": "predict_proba", "shape": [1, 2], "datatype": "FP64", "data": [0.2, 0.8]},
        ],
    }
    first = post(api, structured(RESPONSE, response, ce_id="v2-1", time=RESPONSE_TIME))
    assert first["status"] == "waiting"
    assert waiting(store) == [("response", "churn")]
    assert post(api, structured(REQUEST, request, ce_id="v2-1"))["accepted"] == 1
    assert stored(store, "churn") == [
        {
            "version": "v1",
            "request_id": "v2-1",  # one instance: the event id itself
            "ts_us": REQUEST_US,
            "features": {"age": 41.0, "plan": "pro", "active": True, "note": "hi"},
            "prediction": "1",
            "scores": {"score": 0.8},
        }
    ]
    assert waiting(store) == []


def test_v2_single_tensor_by_position_and_probabilities_only(api: TestClient, store: Store) -> None:
    request = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6],
            }
        ]
    }
    response = {
        "outputs": [
            {
                "name": "output-0",
                "shape": [2, 3],
                "datatype": "FP32",
                "data": [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]],
            }
        ]
    }
    post(api, binary(REQUEST, request, ce_id="pos"))
    assert post(api, binary(RESPONSE, response, ce_id="pos"))["accepted"] == 2
    events = stored(store, "iris")
    assert [e["request_id"] for e in events] == ["pos:0", "pos:1"]
    assert events[0]["features"]["petal_width"] == pytest.approx(1.4)
    assert [e["prediction"] for e in events] == ["1", "0"]  # the most likely class
    assert events[1]["scores"] == {"score_0": 0.6, "score_1": 0.3, "score_2": 0.1}


def test_v1_instances_by_name_and_the_namespace_qualified_service(
    api: TestClient, store: Store
) -> None:
    instances = [
        {"age": 30, "plan": "basic", "active": False, "note": "a"},
        {"age": 31, "plan": "pro", "active": True, "note": "b"},
    ]
    prod = {"namespace": "prod"}
    post(api, structured(REQUEST, {"instances": instances}, ce_id="named", **prod))
    post(api, structured(RESPONSE, {"predictions": [0, 1]}, ce_id="named", **prod))
    events = stored(store, "churn")
    assert [(e["version"], e["request_id"], e["prediction"]) for e in events] == [
        ("v2", "named:0", "0"),  # prod/churn-isvc maps to v2
        ("v2", "named:1", "1"),
    ]
    assert events[1]["features"] == {"age": 31.0, "plan": "pro", "active": True, "note": "b"}


def test_retried_halves_store_nothing_twice(api: TestClient, store: Store) -> None:
    request, response = binary(), binary(RESPONSE, IRIS_RESPONSE, time=RESPONSE_TIME)
    assert post(api, request)["status"] == "waiting"
    assert post(api, request) == {
        "status": "duplicate",
        "received": 2,
        "accepted": 0,
        "duplicates": 2,
    }
    assert waiting(store) == [("request", "iris")]
    assert post(api, response)["accepted"] == 2
    # A retry of either half of a pair already stored is harmless: nothing waits, nothing new.
    assert post(api, response)["status"] == "duplicate"
    assert post(api, request)["status"] == "duplicate"
    assert [e["request_id"] for e in stored(store, "iris")] == [f"{ID}:0", f"{ID}:1"]
    assert waiting(store) == []


def test_a_lost_response_is_dropped_and_counted(
    api: TestClient, store: Store, clock: Clock
) -> None:
    receiver: CloudEventsReceiver = api.app.state.cloudevents  # type: ignore[attr-defined]
    post(api, binary(ce_id="lost"))
    clock.now += 9 * 60
    assert receiver.expire() == {"unpaired_request": 0, "unpaired_response": 0}
    assert waiting(store) == [("request", "iris")]
    clock.now += 2 * 60  # past the 10-minute pairing timeout
    assert receiver.expire() == {"unpaired_request": 1, "unpaired_response": 0}
    assert waiting(store) == []
    metrics = api.get("/metrics").text
    assert 'modelwatch_cloudevents_dropped_total{reason="unpaired_request"} 1.0' in metrics
    assert 'modelwatch_cloudevents_dropped_total{reason="unpaired_response"} 0.0' in metrics
    assert 'modelwatch_cloudevents_waiting{kind="request"} 0.0' in metrics
    # The response after the timeout waits for a request that is gone, and is dropped too.
    assert post(api, binary(RESPONSE, IRIS_RESPONSE, ce_id="lost"))["status"] == "waiting"
    clock.now += 11 * 60
    assert receiver.expire() == {"unpaired_request": 0, "unpaired_response": 1}
    assert stored(store, "iris") == []
    metrics = api.get("/metrics").text
    assert 'modelwatch_cloudevents_dropped_total{reason="unpaired_request"} 1.0' in metrics
    assert 'modelwatch_cloudevents_dropped_total{reason="unpaired_response"} 1.0' in metrics


def test_seldon_core_halves_pair_by_their_request_id(api: TestClient, store: Store) -> None:
    """Seldon's executor: its own types, a fresh ce-id per half, the inference's id in
    ce-requestid, the node in ce-modelid; TensorFlow-protocol payloads as KServe v1."""
    seldon = {"requestid": "puid-7", "modelid": "classifier", "protocol": "tensorflow"}
    request = binary("io.seldon.serving.inference.request", ce_id="a-1", **seldon)
    response = binary("io.seldon.serving.inference.response", IRIS_RESPONSE, ce_id="b-2", **seldon)
    assert post(api, request)["status"] == "waiting"
    assert post(api, response)["accepted"] == 2
    assert [e["request_id"] for e in stored(store, "iris")] == ["puid-7:0", "puid-7:1"]


def test_seldon_protocol_ndarray(api: TestClient, store: Store) -> None:
    seldon = {"requestid": "nd", "modelid": "classifier"}
    request = {
        "data": {
            "names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
            "ndarray": [[5.1, 3.5, 1.4, 0.2]],
        }
    }
    response = {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05]]}}
    post(api, binary("io.seldon.serving.inference.request", request, ce_id="x", **seldon))
    post(api, binary("io.seldon.serving.inference.response", response, ce_id="y", **seldon))
    [event] = stored(store, "iris")
    assert (event["request_id"], event["prediction"]) == ("nd", "0")
    assert event["features"]["sepal_length"] == 5.1


def test_extension_attributes_name_the_model_version(api: TestClient, store: Store) -> None:
    names = {"modelwatchmodel": "iris", "modelwatchversion": "v2"}
    post(api, binary(service="not-in-config", ce_id="ext", **names))
    post(api, binary(RESPONSE, IRIS_RESPONSE, service="not-in-config", ce_id="ext", **names))
    assert {e["version"] for e in stored(store, "iris")} == {"v2"}


@pytest.mark.parametrize(
    ("event", "status", "says"),
    [
        (
            {"headers": {"content-type": "application/json"}, "content": b"{}"},
            400,
            "not a CloudEvent",
        ),
        (
            {
                "headers": {k: v for k, v in binary()["headers"].items() if k != "ce-id"},
                "content": b"{}",
            },
            400,
            "without ce-id",
        ),
        (
            {"headers": {"content-type": "application/cloudevents+json"}, "content": b"{nope"},
            400,
            "structured-mode",
        ),
        (
            {"headers": {"content-type": "application/cloudevents+json"}, "content": b"\x80"},
            400,
            "UTF-8",
        ),
        (
            {"headers": {"content-type": "application/cloudevents+json"}, "content": b"\0" * 5},
            400,
            "structured-mode",
        ),
        (binary(time="yesterday"), 400, "time"),
        (binary("com.example.other"), 422, "not an inference event type"),
        (binary(service="unknown-isvc"), 404, "'unknown-isvc'"),
        (binary(modelwatchmodel="iris"), 422, "modelwatchversion"),
        (binary(modelwatchmodel="nope", modelwatchversion="v1"), 404, "nope"),
        (binary(data={"rows": []}), 422, "not an inference request"),
        (binary(data={"instances": [[1.0, 2.0]]}), 422, "expected 4 in this order"),
        ({**binary(), "content": b'{"instances": [1,'}, 422, "data"),
    ],
)
def test_a_bad_event_is_refused_saying_what_is_wrong(
    api: TestClient, store: Store, event: dict[str, Any], status: int, says: str
) -> None:
    r = api.post("/v1/cloudevents", **event)
    assert r.status_code == status, r.text
    assert says in r.text
    assert waiting(store) == [] and stored(store, "iris") == []


def test_a_pair_that_does_not_fit_the_schema_is_refused_and_recorded(
    api: TestClient, store: Store
) -> None:
    post(api, binary(data={"instances": [[6.8, "wide", 4.8, 1.4]]}, ce_id="bad"))
    r = api.post("/v1/cloudevents", **binary(RESPONSE, {"predictions": [1]}, ce_id="bad"))
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["instances", 0, "features", "sepal_width"] in locs, r.json()
    assert waiting(store) == [] and stored(store, "iris") == []
    with store.read() as conn:
        rejections = conn.execute(select(t.ingest_rejections.c.kind)).scalars().all()
    assert rejections == ["predictions"]
    r = api.post("/v1/cloudevents", **binary(RESPONSE, {"predictions": [1, 2, 0]}))
    assert r.status_code == 200  # waits; the request below has two instances
    r = api.post("/v1/cloudevents", **binary())
    assert r.status_code == 422 and "the request has 2 instances, the response 3" in r.text


def test_the_section_is_validated_with_the_config(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(
        "cloudevents:\n  pair_timeout: 10m\n  services:\n"
        "    sklearn-iris: {model: iris, version: v1}\n"
    )
    config = load_config(path, env={})
    assert config.cloudevents.pair_timeout == 600
    assert config.cloudevents.services["sklearn-iris"].model == "iris"
    path.write_text("cloudevents:\n  services:\n    x: {model: iris}\n")
    with pytest.raises(ConfigError, match=r"cloudevents\.services\.x\.version: Field required"):
        load_config(path, env={})
    path.write_text("cloudevents:\n  pair_timeout: soon\n")
    with pytest.raises(ConfigError, match=r"cloudevents\.pair_timeout: .*'soon'"):
        load_config(path, env={})


def test_halves_arriving_at_once_join_exactly_once(api: TestClient, store: Store) -> None:
    """Request and response of each inference posted at the same moment from two threads
    (two replicas on PostgreSQL serialize on the pair's advisory lock)."""
    receiver: CloudEventsReceiver = api.app.state.cloudevents  # type: ignore[attr-defined]
    pairs = 50
    start = threading.Barrier(2)

    def send(kind: str, data: object) -> None:
        start.wait()
        for i in range(pairs):
            event = binary(kind, data, ce_id=f"race-{i}")
            receiver.receive(event["headers"], event["content"])

    threads = [
        threading.Thread(target=send, args=(REQUEST, IRIS_REQUEST)),
        threading.Thread(target=send, args=(RESPONSE, IRIS_RESPONSE)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stored(store, "iris")) == 2 * pairs
    assert waiting(store) == []
