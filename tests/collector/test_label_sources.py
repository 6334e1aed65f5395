"""Scheduled label sources: a PostgreSQL table and a folder of Parquet/CSV files deliver
each label once, across restarts and a pull cut short (every store test on both stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from collector.ingest import Ingestor
from collector.label_sources import LabelSourcePuller
from modelwatch.label_sources import LabelSourceSpec
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import churn_event

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
QUERY = (
    "SELECT loan_id, repaid, decided_at FROM repayments "
    "WHERE decided_at > :watermark ORDER BY decided_at"
)


def _puller(store: Store, *specs: LabelSourceSpec) -> LabelSourcePuller:
    """A fresh puller, as after a restart: it knows only what the store keeps."""
    return LabelSourcePuller(Ingestor(store, Registry(store)), list(specs))


def _labels(store: Store) -> dict[str, Any]:
    table = Registry(store).get_model("churn").layout.labels
    with store.read() as conn:
        return {
            rid: label for rid, label in conn.execute(select(table.c.request_id, table.c.label))
        }


def _sql_spec(pg_url: str, batch_rows: int = 10) -> LabelSourceSpec:
    return LabelSourceSpec.model_validate(
        {
            "name": "repayments",
            "model": "churn",
            "sql": {
                "url": pg_url,
                "query": QUERY,
                "watermark": "decided_at",
                "start": "1970-01-01T00:00:00+00:00",
            },
            "columns": {"request_id": "loan_id", "label": "repaid", "timestamp": "decided_at"},
            "batch_rows": batch_rows,
        }
    )


def _warehouse(pg_url: str, rows: range) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS repayments "
            "(loan_id text, repaid integer, decided_at timestamptz)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO repayments VALUES (%s, %s, %s)",
                [(f"req-{i}", i % 2, T0 + timedelta(minutes=i)) for i in rows],
            )


def test_a_sql_source_delivers_each_label_once_across_restarts(
    churn: TestClient, store: Store, pg_url: str
) -> None:
    assert churn.post(
        "/v1/predictions",
        json={"model": "churn", "version": "v1", "events": [churn_event(i) for i in range(40)]},
    ).is_success
    _warehouse(pg_url, range(25))
    first = _puller(store, _sql_spec(pg_url)).pull("repayments")
    assert (first.read, first.stored, first.duplicates) == (25, 25, 0)

    again = _puller(store, _sql_spec(pg_url)).pull("repayments")
    assert again.read == 0, "a restarted puller resumes from the stored watermark"

    _warehouse(pg_url, range(25, 32))
    later = _puller(store, _sql_spec(pg_url)).pull("repayments")
    assert (later.read, later.stored) == (7, 7)
    labels = _labels(store)
    assert sorted(labels) == sorted(f"req-{i}" for i in range(32))
    assert all(str(labels[f"req-{i}"]) == str(i % 2) for i in range(32)), labels


def test_a_sql_pull_cut_short_resumes_without_loss_or_duplicates(
    churn: TestClient, store: Store, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _warehouse(pg_url, range(35))
    puller = _puller(store, _sql_spec(pg_url, batch_rows=10))
    real = puller.ingestor.labels
    calls = [0]

    def crash_on_third(payload: object) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise ConnectionError("the process died here")
        return real(payload)

    monkeypatch.setattr(puller.ingestor, "labels", crash_on_third)
    with pytest.raises(ConnectionError):
        puller.pull("repayments")
    assert len(_labels(store)) == 20

    resumed = _puller(store, _sql_spec(pg_url, batch_rows=10)).pull("repayments")
    assert (resumed.read, resumed.stored, resumed.duplicates) == (15, 15, 0)
    assert len(_labels(store)) == 35


def test_a_bad_row_is_named_and_left_out(churn: TestClient, store: Store, pg_url: str) -> None:
    _warehouse(pg_url, range(6))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE repayments SET repaid = 7 WHERE loan_id = 'req-2'")
        conn.execute("UPDATE repayments SET loan_id = NULL WHERE loan_id = 'req-4'")
    result = _puller(store, _sql_spec(pg_url)).pull("repayments")
    assert (result.read, result.stored, result.rejected) == (6, 4, 2)
    assert sorted(_labels(store)) == ["req-0", "req-1", "req-3", "req-5"]
    assert [e.split(":")[0] for e in result.errors] == ["row 3", "row 5"]
    assert "label" in result.errors[0] and "7" in result.errors[0]
    assert "request_id" in result.errors[1]


def test_a_query_without_its_watermark_column_is_a_clear_error(
    churn: TestClient, store: Store, pg_url: str
) -> None:
    _warehouse(pg_url, range(3))
    spec = _sql_spec(pg_url).model_copy(deep=True)
    assert spec.sql is not None
    spec.sql.query = "SELECT loan_id, repaid FROM repayments WHERE loan_id > :watermark"
    with pytest.raises(ValueError, match="no column 'decided_at'"):
        _puller(store, spec).pull("repayments")


def _files_spec(folder: Path, glob: str = "*.parquet") -> LabelSourceSpec:
    return LabelSourceSpec.model_validate(
        {
            "name": "chargebacks",
            "model": "churn",
            "files": {"url": f"file://{folder}", "glob": glob},
            "columns": {"request_id": "request_id", "label": "target", "timestamp": "timestamp"},
        }
    )


def _label_file(path: Path, ids: range) -> None:
    frame = pl.DataFrame(
        {
            "request_id": [f"req-{i}" for i in ids],
            "target": [i % 2 for i in ids],
            "timestamp": [T0 + timedelta(minutes=i) for i in ids],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)


def test_a_folder_of_parquet_files_delivers_each_label_once_across_restarts(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "labels"
    _label_file(folder / "2026-11-20.parquet", range(0, 10))
    _label_file(folder / "2026-11-21.parquet", range(10, 25))
    (folder / "notes.txt").write_text("not a label file")
    first = _puller(store, _files_spec(folder)).pull("chargebacks")
    assert (first.files, first.read, first.stored) == (2, 25, 25)

    assert _puller(store, _files_spec(folder)).pull("chargebacks").read == 0

    _label_file(folder / "2026-11-22.parquet", range(25, 30))
    later = _puller(store, _files_spec(folder)).pull("chargebacks")
    assert (later.files, later.read, later.stored) == (1, 5, 5)
    # A file rewritten with more rows is taken again; its old rows are duplicates.
    _label_file(folder / "2026-11-22.parquet", range(25, 33))
    grown = _puller(store, _files_spec(folder)).pull("chargebacks")
    assert (grown.files, grown.read, grown.stored, grown.duplicates) == (1, 8, 3, 5)
    assert sorted(_labels(store)) == sorted(f"req-{i}" for i in range(33))


def test_csv_files_in_subfolders_match_a_glob(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "landing"
    _label_file(folder / "day=1" / "part.csv", range(0, 4))
    _label_file(folder / "day=2" / "part.csv", range(4, 6))
    _label_file(folder / "other.csv", range(100, 101))
    result = _puller(store, _files_spec(folder, glob="day=*/*.csv")).pull("chargebacks")
    assert (result.files, result.stored) == (2, 6)
    assert "req-100" not in _labels(store)


def test_a_label_source_spec_has_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one of sql: or files:"):
        LabelSourceSpec.model_validate({"name": "x", "model": "churn"})
    with pytest.raises(ValueError, match="must use :watermark"):
        LabelSourceSpec.model_validate(
            {
                "name": "x",
                "model": "churn",
                "sql": {"url": "sqlite://", "query": "SELECT 1", "watermark": "w"},
            }
        )


def test_the_store_keeps_the_marks(churn: TestClient, store: Store, tmp_path: Path) -> None:
    from modelwatch.store import tables as t

    folder = tmp_path / "labels"
    _label_file(folder / "a.parquet", range(3))
    _puller(store, _files_spec(folder)).pull("chargebacks")
    with store.read() as conn:
        taken = conn.execute(select(func.count()).select_from(t.label_source_files)).scalar()
    assert taken == 1


def test_the_scheduler_pulls_each_source_on_its_interval(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    import time

    from modelwatch.background import build_background
    from modelwatch.config import Config

    folder = tmp_path / "labels"
    _label_file(folder / "a.parquet", range(4))
    spec = _files_spec(folder).model_dump(mode="json") | {"interval": "1s"}
    config = Config.model_validate({"label_sources": [spec]})
    registry = Registry(store)
    background = build_background(store, registry, config, Ingestor(store, registry))
    background.start()
    try:
        deadline = time.monotonic() + 20
        while len(_labels(store)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        _label_file(folder / "b.parquet", range(4, 6))
        while len(_labels(store)) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        background.shutdown()
    assert sorted(_labels(store)) == [f"req-{i}" for i in range(6)]
