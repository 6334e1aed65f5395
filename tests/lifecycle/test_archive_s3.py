"""The archive in a real S3-compatible server (SeaweedFS on loopback), on SQLite and
PostgreSQL: archive, delete from the hot store, evaluate the archived windows, and get
exactly the results computed before archiving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lifecycle.archive import attach_archive
from modelwatch.cli import cli
from modelwatch.config import load_config
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.lifecycle.s3server import ACCESS_KEY, SECRET_KEY, S3Server, seaweedfs
from tests.lifecycle.test_archive import (
    _evaluated_again,
    _hot_events,
    _results,
    _retention,
    _window,
)
from tests.lifecycle.test_retention import _fill, _monitor

BUCKET = "modelwatch-archive"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), BUCKET) as server:
        yield server


def test_archive_in_s3_evaluates_to_the_same_results(
    churn: TestClient,
    store: Store,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    prefix = f"{store.dialect}/{tmp_path.name}"
    config = tmp_path / "modelwatch.yaml"
    config.write_text(
        "retention:\n  raw: 10d\n"
        f"archive:\n  url: s3://{BUCKET}/{prefix}\n  endpoint: {s3.endpoint}\n"
        "  region: us-east-1\n"
    )
    _fill(churn)
    _monitor(churn, checks=["accuracy", "data_drift"])
    env = {"MODELWATCH_DATABASE_URL": store.url}
    evaluate = ["evaluate", "--model", "churn", "--since", "2026-10-23"]
    assert CliRunner().invoke(cli, evaluate, env=env).exit_code == 0
    before, window = _results(store), _window(store)
    hot_before = _hot_events(store)

    spec = load_config(str(config)).archive
    archive = attach_archive(store, Registry(store), spec)
    assert archive is not None
    (report,) = _retention(store, archive).run()
    expired = report.rows["events"]
    assert expired > 0 and _hot_events(store) == hot_before - expired
    model = Registry(store).get_model("churn")
    files = archive.files(model, kind="events")
    assert sum(f.rows for f in files) == expired
    assert all(f.path.startswith(f"{BUCKET}/{prefix}/model=churn/") for f in files)
    listed = s3.filesystem().get_file_info(_selector(f"{BUCKET}/{prefix}"))
    assert {f.path for f in files} <= {i.path for i in listed}
    assert _window(store).equals(window)

    assert _evaluated_again(store, [*evaluate, "--config", str(config)], env) == before
    verified = CliRunner().invoke(
        cli, ["archive", "verify", "--model", "churn", "--config", str(config)], env=env
    )
    every = len(archive.files(model))
    assert verified.exit_code == 0, verified.output
    assert f"{every} of {every} files verified" in verified.output


def _selector(base: str) -> pafs.FileSelector:
    return pafs.FileSelector(base, recursive=True)
