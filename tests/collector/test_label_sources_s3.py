"""A label source over Parquet files in a real S3-compatible server (SeaweedFS on
loopback), pulled with ``modelwatch labels pull`` as an operator would, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.cli import cli
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.lifecycle.s3server import ACCESS_KEY, SECRET_KEY, S3Server, seaweedfs

BUCKET = "landing"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), BUCKET) as server:
        yield server


def _put(s3: S3Server, path: str, ids: range) -> None:
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "request_id": [f"req-{i}" for i in ids],
            "label": [i % 2 for i in ids],
            "timestamp": [t0 + timedelta(minutes=i) for i in ids],
        }
    )
    with s3.filesystem().open_output_stream(path) as out:
        pq.write_table(frame.to_arrow(), out)


def test_labels_pull_takes_each_s3_file_once(
    churn: TestClient, store: Store, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    prefix = f"{BUCKET}/{store.dialect}-{tmp_path.name}"
    _put(s3, f"{prefix}/a.parquet", range(0, 12))
    _put(s3, f"{prefix}/b.parquet", range(12, 20))
    config = tmp_path / "modelwatch.yaml"
    config.write_text(
        "label_sources:\n"
        "  - name: chargebacks\n    model: churn\n    interval: 1m\n"
        f"    files: {{url: 's3://{prefix}', endpoint: '{s3.endpoint}', region: us-east-1}}\n"
    )
    env = {"MODELWATCH_DATABASE_URL": store.url}
    pull = ["labels", "pull", "--config", str(config)]
    first = CliRunner().invoke(cli, pull, env=env)
    assert first.exit_code == 0, first.output
    assert "chargebacks: 20 rows read, 20 stored, 0 duplicates" in first.output
    assert "2 files taken" in first.output

    again = CliRunner().invoke(cli, pull, env=env)
    assert "chargebacks: 0 rows read, 0 stored" in again.output
    table = Registry(store).get_model("churn").layout.labels
    with store.read() as conn:
        count = len(conn.execute(table.select()).all())
    assert count == 20


def test_labels_pull_names_an_unknown_source(tmp_path: Path, store: Store) -> None:
    config = tmp_path / "modelwatch.yaml"
    config.write_text("label_sources: []\n")
    result = CliRunner().invoke(
        cli,
        ["labels", "pull", "--source", "nope", "--config", str(config)],
        env={"MODELWATCH_DATABASE_URL": store.url},
    )
    assert result.exit_code != 0
    assert "label_sources: no source named 'nope' (known: [])" in result.output
