"""Columnar reads of event windows and reference datasets, on SQLite and PostgreSQL.

On PostgreSQL every test runs in its own schema (``search_path`` in the URL),
so these also prove that the reader honours the URL's options.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from collector.ingest import Ingestor
from modelwatch.domain import ModelSpec
from modelwatch.errors import StoreError
from modelwatch.store import frames
from modelwatch.store.engine import Store
from modelwatch.store.frames import frame_columns, read_events, read_reference
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import ModelRecord, Registry
from tests.conftest import CHURN_SPEC, churn_event

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
SECOND = 1_000_000
UTC_US = pl.Datetime("us", "UTC")
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "version_id": pl.Int64(),
    "request_id": pl.String(),
    "timestamp": UTC_US,
    "prediction": pl.String(),
    "score": pl.Float64(),
    "age": pl.Float64(),
    "plan": pl.String(),
    "active": pl.Boolean(),
    "note": pl.String(),
    "country": pl.String(),
}
LABEL_SCHEMA: dict[str, pl.DataType] = {"label": pl.String(), "label_timestamp": UTC_US}


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _event(i: int, seconds: float | None = None, **overrides: Any) -> dict[str, Any]:
    ts = _at(i if seconds is None else seconds).isoformat()
    return churn_event(i, timestamp=ts, **overrides)


def _ingest(store: Store, events: list[dict[str, Any]], version: str = "v1") -> None:
    ingestor = Ingestor(store, Registry(store))
    result = ingestor.predictions({"model": "churn", "version": version, "events": events})
    assert result.accepted == len(events)


def _labels(store: Store, labels: list[dict[str, Any]]) -> None:
    Ingestor(store, Registry(store)).labels({"model": "churn", "labels": labels})


def _model(store: Store) -> ModelRecord:
    return Registry(store).get_model("churn")


def _version_id(store: Store, version: str) -> int:
    registry = Registry(store)
    return registry.get_version(registry.get_model("churn"), version).id


def test_window_holds_exact_values_and_dtypes(store: Store, churn: TestClient) -> None:
    _ingest(store, [_event(i) for i in range(6)])
    v1 = _version_id(store, "v1")
    frame = read_events(store, _model(store), [v1], T0_US + 2 * SECOND, T0_US + 5 * SECOND)
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.to_dicts() == [
        {
            "version_id": v1,
            "request_id": f"req-{i}",
            "timestamp": _at(i),
            "prediction": str(i % 2),
            "score": 0.25 if i % 2 == 0 else 0.75,
            "age": 30.0 + i,
            "plan": "pro" if i % 2 else "basic",
            "active": bool(i % 3),
            "note": "hi",
            "country": "DE",
        }
        for i in (2, 3, 4)
    ]


def test_window_is_half_open_to_the_microsecond(store: Store, churn: TestClient) -> None:
    _ingest(
        store,
        [
            _event(0, seconds=-0.000001),
            _event(1, seconds=0),
            _event(2, seconds=9.999999),
            _event(3, seconds=10),
        ],
    )
    frame = read_events(
        store, _model(store), [_version_id(store, "v1")], T0_US, T0_US + 10 * SECOND
    )
    assert frame["request_id"].to_list() == ["req-1", "req-2"]
    assert frame["timestamp"].to_list() == [_at(0), _at(9.999999)]


def test_versions_are_filtered_and_ordered(store: Store, churn: TestClient) -> None:
    _ingest(store, [_event(i, seconds=10 - i) for i in range(3)], "v1")
    _ingest(store, [_event(i, seconds=i) for i in range(3)], "v2")
    model, v1, v2 = _model(store), _version_id(store, "v1"), _version_id(store, "v2")
    end = T0_US + 60 * SECOND
    only_v2 = read_events(store, model, [v2], T0_US, end)
    assert only_v2["version_id"].to_list() == [v2] * 3
    both = read_events(store, model, [v2, v1], T0_US, end)
    assert both.select("version_id", "request_id").rows() == [
        (v1, "req-2"),
        (v1, "req-1"),
        (v1, "req-0"),
        (v2, "req-0"),
        (v2, "req-1"),
        (v2, "req-2"),
    ]


@pytest.mark.parametrize("with_labels", [False, True])
def test_empty_windows_keep_the_schema(store: Store, churn: TestClient, with_labels: bool) -> None:
    _ingest(store, [_event(i) for i in range(3)])
    model, v1 = _model(store), _version_id(store, "v1")
    expected = pl.Schema(EVENT_SCHEMA | (LABEL_SCHEMA if with_labels else {}))
    for versions, start in (([v1], T0_US + 100 * SECOND), ([], T0_US), ([v1 + 99], T0_US)):
        frame = read_events(
            store, model, versions, start, start + 10 * SECOND, with_labels=with_labels
        )
        assert frame.height == 0
        assert frame.schema == expected


def test_null_columns_keep_their_dtypes(store: Store, churn: TestClient) -> None:
    # 1,500 rows of nulls before the first value: more than one default ADBC batch.
    empty = {"age": None, "plan": None, "active": None, "note": None}
    events = [_event(i, seconds=i / 1000, features=empty, score=None) for i in range(1500)]
    events[-1] = _event(1499, seconds=1.499, features={"age": 7, "active": False})
    for event in events:
        event.pop("segment")
    _ingest(store, events)
    frame = read_events(store, _model(store), [_version_id(store, "v1")], T0_US, T0_US + SECOND)
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.height == 1000
    assert (
        frame.drop("version_id", "request_id", "timestamp", "prediction").null_count().row(0)
        == (1000,) * 6
    )
    tail = read_events(store, _model(store), [_version_id(store, "v1")], T0_US, T0_US + 2 * SECOND)
    assert tail.row(-1, named=True) == {
        "version_id": _version_id(store, "v1"),
        "request_id": "req-1499",
        "timestamp": _at(1.499),
        "prediction": "1",
        "score": 0.75,
        "age": 7.0,
        "plan": None,
        "active": False,
        "note": None,
        "country": None,
    }


def test_labels_join_whether_they_arrive_before_or_after(store: Store, churn: TestClient) -> None:
    _labels(store, [{"request_id": "req-1", "label": 1, "timestamp": _at(100).isoformat()}])
    _ingest(store, [_event(i) for i in range(4)])
    _labels(
        store,
        [
            {"request_id": "req-2", "label": "0", "timestamp": _at(200).isoformat()},
            {"request_id": "req-3", "label": 1, "timestamp": _at(300).isoformat()},
            {"request_id": "req-99", "label": 0},  # no such event: not in any window
        ],
    )
    # A correction replaces the label in later reads.
    _labels(store, [{"request_id": "req-2", "label": "1", "timestamp": _at(250).isoformat()}])
    model, v1 = _model(store), _version_id(store, "v1")
    frame = read_events(store, model, [v1], T0_US, T0_US + 60 * SECOND, with_labels=True)
    assert frame.schema == pl.Schema(EVENT_SCHEMA | LABEL_SCHEMA)
    assert frame.select("request_id", "label", "label_timestamp").rows() == [
        ("req-0", None, None),
        ("req-1", "1", _at(100)),
        ("req-2", "1", _at(250)),
        ("req-3", "1", _at(300)),
    ]
    plain = read_events(store, model, [v1], T0_US, T0_US + 60 * SECOND)
    assert "label" not in plain.columns and plain.height == 4


def test_reference_reads_back_with_user_names(store: Store, churn: TestClient) -> None:
    csv = (
        "age,plan,active,note,prediction,score,target,extra\n"
        "31.5,pro,true,a,1,0.9,1,x\n"
        "40,basic,false,,0,0.2,0,y\n"
        ",,,,,,,\n"
    )
    r = churn.post(
        "/v1/models/churn/versions/v1/reference",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    frame = read_reference(store, _model(store), r.json()["dataset_id"])
    assert frame.schema == pl.Schema(
        {
            "prediction": pl.String(),
            "score": pl.Float64(),
            "age": pl.Float64(),
            "plan": pl.String(),
            "active": pl.Boolean(),
            "note": pl.String(),
            "target": pl.String(),
        }
    )
    assert frame.rows() == [
        ("1", 0.9, 31.5, "pro", True, "a", "1"),
        ("0", 0.2, 40.0, "basic", False, None, "0"),
        (None, None, None, None, None, None, None),
    ]
    missing = read_reference(store, _model(store), 12345)
    assert missing.height == 0 and missing.schema == frame.schema


def test_multiclass_scores_and_renamed_target(store: Store) -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "churn",
            "task": "multiclass",
            "classes": ["a", "b", "c"],
            "features": [{"name": "x", "type": "numeric"}],
            "prediction": "pred",
            "target": "truth",
        }
    )
    registry = Registry(store)
    model = registry.create_model(spec, "test")
    version = registry.create_version(model, "v1", None, "test")
    scores = {"a": 0.1, "b": 0.7, "c": 0.2}
    _ingest(store, [{**_event(0), "prediction": "b", "score": None, "scores": scores,
                     "features": {"x": 1}, "segment": None}])  # fmt: skip
    frame = read_events(store, model, [version.id], T0_US, T0_US + SECOND)
    assert frame.columns == [
        "version_id", "request_id", "timestamp", "pred", "score_a", "score_b", "score_c", "x"
    ]  # fmt: skip
    assert frame.row(0)[3:] == ("b", 0.1, 0.7, 0.2, 1.0)
    assert frame_columns(model.layout).target == "truth"


def test_colliding_names_get_their_role_as_prefix() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "odd",
            "task": "binary",
            "features": [
                {"name": "timestamp", "type": "numeric"},
                {"name": "country", "type": "categorical"},
                {"name": "label", "type": "numeric"},
            ],
            "segments": ["country"],
            "target": "country",
        }
    )
    names = frame_columns(ModelRecord(1, "odd", spec, T0, "t").layout)
    assert names.features == ("feature:timestamp", "country", "feature:label")
    assert names.segments == ("segment:country",)
    assert names.target == "target:country"
    assert len(set(names.by_storage.values())) == len(names.by_storage)


def test_in_memory_sqlite_reads_through_the_engine() -> None:
    store = Store("sqlite://")
    upgrade(store)
    registry = Registry(store)
    spec = ModelSpec.model_validate(CHURN_SPEC)
    model = registry.create_model(spec, "test")
    version = registry.create_version(model, "v1", None, "test")
    _ingest(store, [_event(i) for i in range(3)])
    frame = read_events(store, model, [version.id], T0_US, T0_US + 60 * SECOND)
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame["age"].to_list() == [30.0, 31.0, 32.0]
    store.dispose()


def test_reads_while_writing_see_whole_batches(store: Store, churn: TestClient) -> None:
    """Windows read while another thread commits batches: no error, only whole batches."""
    v1 = _version_id(store, "v1")
    batches, size = 30, 50
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for b in range(batches):
                _ingest(store, [_event(b * size + i, seconds=b) for i in range(size)])
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while writer.is_alive():
        frame = read_events(store, _model(store), [v1], T0_US, T0_US + 60 * SECOND)
        assert frame.height % size == 0 and frame.height >= seen
        seen = frame.height
    writer.join()
    assert not failures
    final = read_events(store, _model(store), [v1], T0_US, T0_US + 60 * SECOND)
    assert final.height == batches * size


def test_sqlite_reads_load_no_second_sqlite_library(store: Store, churn: TestClient) -> None:
    """ADBC bundles its own SQLite; loaded next to Python's sqlite3 on the same
    database it breaks the other's locks and WAL index, so it must stay out of process."""
    maps = Path("/proc/self/maps")
    if not store.is_sqlite or not maps.exists():
        pytest.skip("SQLite on Linux only")
    _ingest(store, [_event(i) for i in range(3)])
    frame = read_events(store, _model(store), [_version_id(store, "v1")], T0_US, T0_US + SECOND)
    assert frame.height == 1
    assert "adbc_driver_sqlite" not in maps.read_text()


def _idle_readers() -> list[subprocess.Popen[bytes]]:
    procs = []
    with contextlib.suppress(queue.Empty):
        while True:
            procs.append(frames._READERS._idle.get_nowait())
    return procs


def test_a_killed_sqlite_reader_is_replaced(store: Store, churn: TestClient) -> None:
    if not store.is_sqlite:
        pytest.skip("SQLite only")
    _ingest(store, [_event(i) for i in range(3)])
    model, v1 = _model(store), _version_id(store, "v1")
    assert read_events(store, model, [v1], T0_US, T0_US + 60 * SECOND).height == 3
    for proc in _idle_readers():
        proc.kill()
        proc.wait()
        frames._READERS._idle.put(proc)
    assert read_events(store, model, [v1], T0_US, T0_US + 60 * SECOND).height == 3


def test_a_reader_of_other_code_is_refused_not_leaked(
    store: Store, churn: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not store.is_sqlite:
        pytest.skip("SQLite only")
    for proc in _idle_readers():
        proc.kill()
        proc.wait()
    started: list[subprocess.Popen[bytes]] = []
    start = frames._start_reader

    def recording() -> subprocess.Popen[bytes]:
        started.append(start())
        return started[-1]

    monkeypatch.setattr(frames, "_PROTOCOL", "modelwatch-sqlite-reader/0")
    monkeypatch.setattr(frames, "_start_reader", recording)
    with pytest.raises(StoreError, match="reader process failed"):
        frames.fetch(store, "SELECT 1")
    assert started and all(p.returncode is not None for p in started)


def test_unreachable_store_is_a_store_error(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path}/missing.db")
    spec = ModelSpec.model_validate(CHURN_SPEC)
    with pytest.raises(StoreError, match="reading from the store failed"):
        read_events(store, ModelRecord(1, "churn", spec, T0, "t"), [1], 0, 1)
    assert not (tmp_path / "missing.db").exists()
