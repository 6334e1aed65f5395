"""The modelwatch command: import, keys, check-config, serve's bind guard, db upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.cli import cli
from modelwatch.store.engine import Store
from modelwatch.store.migrate import head_revision


def _run(store: Store, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(
        cli, list(args), env={"MODELWATCH_DATABASE_URL": store.url}, catch_exceptions=False
    )


def _events(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": [f"req-{i}" for i in range(start, start + n)],
            "timestamp": pl.datetime_range(
                pl.datetime(2026, 11, 1),
                pl.datetime(2026, 11, 1) + pl.duration(seconds=n - 1),
                "1s",
                eager=True,
            ),
            "age": [float(i) for i in range(n)],
            "plan": ["pro", "basic"] * (n // 2),
            "active": [True, False] * (n // 2),
            "note": ["hello"] * n,
            "prediction": [0, 1] * (n // 2),
            "score": [0.3, 0.6] * (n // 2),
            "country": ["DE", "FR"] * (n // 2),
        }
    )


def _version(client: TestClient, name: str) -> dict[str, Any]:
    versions = client.get("/v1/models/churn").json()["versions"]
    return next(v for v in versions if v["version"] == name)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_import_predictions_streams_and_is_idempotent(
    churn: TestClient, store: Store, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"events.{suffix}"
    frame = _events(1200)
    frame.write_parquet(path) if suffix == "parquet" else frame.write_csv(path)
    args = (
        "import",
        "predictions",
        str(path),
        "--model",
        "churn",
        "--version",
        "v1",
        "--batch-size",
        "500",
    )
    result = _run(store, *args)
    assert result.exit_code == 0, result.output
    assert "1200 rows, 1200 stored, 0 duplicates" in result.output
    assert _version(churn, "v1")["events"]["count"] == 1200
    again = _run(store, *args)
    assert "0 stored, 1200 duplicates" in again.output
    assert _version(churn, "v1")["events"]["count"] == 1200


def test_import_error_names_file_row_and_column(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    frame = _events(10).with_columns(
        pl.when(pl.col("request_id") == "req-7")
        .then(pl.lit(5))
        .otherwise(pl.col("prediction"))
        .alias("prediction")
    )
    frame.write_csv(path)
    result = _run(store, "import", "predictions", str(path), "--model", "churn", "--version", "v1")
    assert result.exit_code != 0
    assert f"{path}: row[8].prediction" in result.output
    assert _version(churn, "v1")["events"]["count"] == 0
    missing = tmp_path / "missing.csv"
    _events(4).drop("timestamp").write_csv(missing)
    result = _run(
        store, "import", "predictions", str(missing), "--model", "churn", "--version", "v1"
    )
    assert result.exit_code != 0 and "timestamp: required column is missing" in result.output


def test_import_labels_and_usage(churn: TestClient, store: Store, tmp_path: Path) -> None:
    _run(
        store,
        "import",
        "predictions",
        _write(tmp_path, _events(6)),
        "--model",
        "churn",
        "--version",
        "v1",
    )
    labels = pl.DataFrame({"request_id": ["req-1", "req-2", "req-99"], "target": [1, 0, 1]})
    result = _run(store, "import", "labels", _write(tmp_path, labels, "labels"), "--model", "churn")
    assert "3 stored" in result.output, result.output
    assert _version(churn, "v1")["labels"]["joined"] == 2
    usage = pl.DataFrame(
        {
            "timestamp": [1763632800.0, 1763632801.0],
            "latency_ms": [12.0, 14.5],
            "gpu_seconds": [0.1, 0.2],
        }
    )
    result = _run(
        store,
        "import",
        "usage",
        _write(tmp_path, usage, "usage"),
        "--model",
        "churn",
        "--version",
        "v2",
    )
    assert "2 stored" in result.output, result.output
    assert _version(churn, "v2")["usage"]["count"] == 2
    # again, with one more sample: the two already stored are duplicates, though the
    # file has no sample ids
    more = pl.concat([usage, usage.head(1).with_columns(timestamp=pl.lit(1763632802.0))])
    result = _run(
        store,
        "import",
        "usage",
        _write(tmp_path, more, "usage"),
        "--model",
        "churn",
        "--version",
        "v2",
    )
    assert "3 rows, 1 stored, 2 duplicates" in result.output, result.output
    assert _version(churn, "v2")["usage"]["count"] == 3


def _write(tmp_path: Path, frame: pl.DataFrame, name: str = "events") -> str:
    path = tmp_path / f"{name}.parquet"
    frame.write_parquet(path)
    return str(path)


def test_keys_create_list_revoke(store: Store) -> None:
    result = _run(store, "keys", "create", "--name", "ci", "--scope", "ingest")
    assert result.exit_code == 0
    token = result.stdout.strip().splitlines()[0]
    assert token.startswith("mw_")
    listed = _run(store, "keys", "list").output
    assert "ci\tingest" in listed and token not in listed
    assert _run(store, "keys", "revoke", "ci").exit_code == 0
    assert "revoked" in _run(store, "keys", "list").output
    dup = _run(store, "keys", "create", "--name", "ci", "--scope", "read")
    assert dup.exit_code != 0 and "already exists" in dup.output


def test_serve_refuses_public_bind_without_keys(store: Store) -> None:
    result = _run(store, "serve", "--host", "0.0.0.0")
    assert result.exit_code != 0
    assert "refusing to listen on 0.0.0.0" in result.output


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text(
        "models:\n  - {name: m, task: regression, features: [{name: x, type: numeric}]}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(good)])
    assert result.exit_code == 0 and "ok (1 models, 0 monitors)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - {name: m, task: regression, features: [{name: x, type: number}]}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}: models[0].features[0].type:" in result.output and "'number'" in result.output


def test_db_upgrade_is_idempotent(store: Store) -> None:
    head = head_revision()
    assert f"revision {head}" in _run(store, "db", "upgrade").output
    assert f"current: {head}  head: {head}" in _run(store, "db", "current").output
