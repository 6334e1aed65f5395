"""Strings holding NUL, which PostgreSQL text cannot store: both stores refuse them
alike (422 naming the field), before anything is written, on every ingest path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from collector.importer import import_file
from modelwatch.errors import ValidationFailed
from modelwatch.storable import NUL_MESSAGE
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.collector.test_otlp import T0, _export, _memory, _post, _stored
from tests.conftest import churn_event

NUL = "\u0000"


def _events_stored(store: Store) -> int:
    events = Registry(store).get_model("churn").layout.events
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def _batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "churn", "version": "v1", "events": events}


def _with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    event = churn_event(3)
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


@pytest.mark.parametrize(
    "path",
    [
        ("request_id",),
        ("features", "plan"),
        ("features", "note"),
        ("segment", "country"),
    ],
)
def test_a_nul_in_an_event_is_refused_naming_it(
    churn: TestClient, store: Store, path: tuple[str, ...]
) -> None:
    events = [churn_event(i) for i in range(3)] + [_with(path, f"a{NUL}b"), churn_event(4)]
    r = churn.post("/v1/predictions", json=_batch(events))
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["loc"] == ["events", 3, *path]
    assert error["msg"] == NUL_MESSAGE
    assert _events_stored(store) == 0  # the batch is validated whole


@pytest.mark.parametrize("field", ["model", "version"])
def test_a_nul_in_the_batch_envelope_is_refused(churn: TestClient, field: str) -> None:
    body = _batch([churn_event(1)])
    body[field] += NUL
    r = churn.post("/v1/predictions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == [field]


def test_an_escaped_backslash_u0000_is_plain_text_and_stored(
    churn: TestClient, store: Store
) -> None:
    # The raw bytes hold "\\u0000" (a backslash, then u0000): no NUL, the batch is taken.
    r = churn.post("/v1/predictions", json=_batch([_with(("features", "note"), "\\u0000")]))
    assert r.status_code == 200, r.text
    assert _events_stored(store) == 1


def test_a_nul_in_a_label_request_id_is_refused(churn: TestClient) -> None:
    labels = [{"request_id": "ok", "label": 1}, {"request_id": f"x{NUL}", "label": 0}]
    r = churn.post("/v1/ground-truth", json={"model": "churn", "labels": labels})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["labels", 1, "request_id"]


def test_a_nul_in_a_label_value_is_refused(churn: TestClient) -> None:
    body = {"model": "churn", "labels": [{"request_id": "r", "label": f"1{NUL}"}]}
    r = churn.post("/v1/ground-truth", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["labels", 0, "label"]


def test_a_nul_in_a_usage_sample_id_is_refused(churn: TestClient, store: Store) -> None:
    sample = {"timestamp": 1.7e9, "sample_id": f"s{NUL}", "latency_ms": 3.0}
    body = {"model": "churn", "version": "v1", "samples": [sample]}
    r = churn.post("/v1/resource-usage", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["samples", 0, "sample_id"]
    assert _stored(store) == []


def test_an_otlp_model_attribute_with_a_nul_is_a_partial_success(
    churn: TestClient, store: Store
) -> None:
    request = _export([_memory(T0, 64)], model=f"churn{NUL}")
    request.resource_metrics.extend(_export([_memory(T0, 32)]).resource_metrics)
    response = _post(churn, request)
    assert response.partial_success.rejected_data_points == 1
    assert "NUL" in response.partial_success.error_message
    assert [r["memory_mb"] for r in _stored(store)] == [pytest.approx(32)]


def test_importing_a_file_with_a_nul_names_its_row_and_column(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    rows = ["request_id,timestamp,prediction,score,age,plan,active,note,country"]
    rows += [f"r{i},1795168800,1,0.5,30,pro,true,n,DE" for i in range(3)]
    rows.append(f"r9,1795168800,1,0.5,30,p{NUL}ro,true,n,DE")
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValidationFailed) as caught:
        import_file(store, "predictions", path, "churn", "v1", batch_size=100)
    [error] = caught.value.errors
    assert error.loc == ("row", 4, "plan")
    assert error.msg == NUL_MESSAGE
    assert _events_stored(store) == 0


def test_a_reference_with_a_nul_names_its_column(churn: TestClient) -> None:
    csv = f"age,plan,active,note\n30,pro,true,a\n31,basic,false,b{NUL}c\n".encode()
    r = churn.post(
        "/v1/models/churn/versions/v1/reference", content=csv, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["loc"] == ["note"]
    assert error["msg"] == f"row 2: {NUL_MESSAGE}"


def test_raw_bytes_with_an_escaped_nul_take_the_general_path(churn: TestClient) -> None:
    # Hand-written bytes (no client serialiser): the fast decoder must not see them.
    body = orjson.dumps(_batch([churn_event(1)])).replace(b'"req-1"', b'"req\\u0000-1"')
    r = churn.post("/v1/predictions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["events", 0, "request_id"]
