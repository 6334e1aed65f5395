"""The Parquet archive on a local file system, on SQLite and PostgreSQL: retention archives
before it deletes, archived windows read back value for value, the catalog tells the truth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal
from sqlalchemy import func, select

from lifecycle.archive import ParquetArchive, attach_archive
from lifecycle.retention import Retention
from modelwatch.archive import ArchiveSpec
from modelwatch.retention import RetentionSpec
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.frames import read_events
from modelwatch.store.registry import Registry
from tests.lifecycle.test_retention import DAYS, NOW, PER_DAY, _fill, _monitor

US = 1_000_000
START_US = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * US)
END_US = int(NOW.timestamp() * US)


def _archive(store: Store, root: Path) -> ParquetArchive:
    archive = attach_archive(
        store, Registry(store), ArchiveSpec.model_validate({"url": root.as_uri()})
    )
    assert archive is not None
    return archive


def _retention(store: Store, archive: ParquetArchive | None, raw: str = "10d") -> Retention:
    spec = RetentionSpec.model_validate({"raw": raw, "batch_rows": 100})
    return Retention(store, Registry(store), spec, clock=NOW.timestamp, archive=archive)


def _window(store: Store) -> pl.DataFrame:
    registry = Registry(store)
    model = registry.get_model("churn")
    versions = [v.id for v in registry.list_versions(model)]
    return read_events(store, model, versions, START_US, END_US, with_labels=True)


def _hot_events(store: Store) -> int:
    model = Registry(store).get_model("churn")
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(model.layout.events)).scalar_one())


def test_retention_archives_before_it_deletes_and_reads_come_back_whole(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    _fill(churn)
    _monitor(churn)
    before = _window(store)
    assert before.height == DAYS * PER_DAY * 2
    archive = _archive(store, tmp_path)
    (report,) = _retention(store, archive).run()
    cutoff = report.cutoffs.raw_before_us
    expired = before.filter(pl.col("timestamp") < pl.lit(cutoff).cast(pl.Datetime("us", "UTC")))
    assert report.rows["events"] == expired.height > 0
    assert report.rows["archived"] >= expired.height
    assert _hot_events(store) == before.height - expired.height
    # The catalog counts exactly the rows that left the hot tables, day by day.
    model = Registry(store).get_model("churn")
    events = archive.files(model, kind="events")
    assert sum(f.rows for f in events) == expired.height
    assert all(f.path.startswith(str(tmp_path)) and Path(f.path).is_file() for f in events)
    # Reads of the whole span are the same rows as before, value for value.
    assert_frame_equal(_window(store), before)
    # Without the archive the store has only the hot part.
    store.cold = None
    assert _window(store).height == before.height - expired.height


def test_a_day_archived_again_is_the_same_file(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    _fill(churn)
    archive = _archive(store, tmp_path)
    model = Registry(store).get_model("churn")
    version = Registry(store).list_versions(model)[0]
    written = archive.archive_day(model, version.id, END_US - 30 * 86_400 * US, "events")
    rewritten = archive.archive_day(model, version.id, END_US - 30 * 86_400 * US, "events")
    assert written is not None and rewritten is not None
    (first, keys), (again, _) = written, rewritten
    assert len(keys) == first.rows == PER_DAY
    assert (again.sha256, again.rows, again.path) == (first.sha256, first.rows, first.path)
    assert len(archive.files(model)) == 1
    assert all(archive.verify(f).ok for f in archive.files(model))


def test_verify_finds_a_file_changed_or_gone(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    _fill(churn)
    _monitor(churn)
    archive = _archive(store, tmp_path)
    _retention(store, archive).run()
    model = Registry(store).get_model("churn")
    files = archive.files(model, kind="events")
    Path(files[0].path).write_bytes(Path(files[0].path).read_bytes()[:-10] + b"0123456789")
    Path(files[1].path).unlink()
    verdicts = [archive.verify(f) for f in files]
    assert [v.ok for v in verdicts[:2]] == [False, False]
    assert "SHA-256" in str(verdicts[0].problem) and "cannot be read" in str(verdicts[1].problem)
    assert all(v.ok for v in verdicts[2:])


def test_a_day_that_cannot_be_archived_is_not_deleted(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    _fill(churn)
    _monitor(churn)
    blocked = tmp_path / "archive"
    blocked.write_text("a file where the archive's directory should be")
    archive = _archive(store, blocked)
    before = _hot_events(store)
    (report,) = _retention(store, archive).run()
    assert report.rows.get("events", 0) == 0 and "archived" not in report.rows
    assert _hot_events(store) == before
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.archive_files)).scalar_one() == 0


@pytest.mark.parametrize("kind", ["events", "usage"])
def test_restore_puts_a_day_back_in_the_hot_tables(
    churn: TestClient, store: Store, tmp_path: Path, kind: str
) -> None:
    from lifecycle.restore import restore_day

    _fill(churn)
    _monitor(churn)
    archive = _archive(store, tmp_path)
    _retention(store, archive).run()
    model = Registry(store).get_model("churn")
    entry = archive.files(model, kind=kind)[0]
    store.cold = None
    hot = _window(store).height
    assert restore_day(archive, model, entry) == entry.rows
    assert restore_day(archive, model, entry) == 0  # nothing is stored twice
    if kind == "events":
        assert _window(store).height == hot + entry.rows


def test_cli_archives_lists_verifies_restores(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from modelwatch.cli import cli

    _fill(churn)
    _monitor(churn)
    root = tmp_path / "archive"
    config = tmp_path / "modelwatch.yaml"
    config.write_text(f"retention:\n  raw: 10d\narchive:\n  url: {root.as_uri()}\n")
    env = {"MODELWATCH_DATABASE_URL": store.url}
    runner = CliRunner()
    with_config = ["--model", "churn", "--config", str(config)]
    done = runner.invoke(cli, ["retention", "run", *with_config], env=env)
    assert done.exit_code == 0, done.output
    assert "rows archived so far" in done.output and "archived" in done.output.splitlines()[-1]
    listed = runner.invoke(cli, ["archive", "list", *with_config], env=env)
    assert listed.exit_code == 0, listed.output
    days = sorted({line.split()[0] for line in listed.output.splitlines()})
    assert len(days) > 10 and all(str(root) in line for line in listed.output.splitlines())
    verified = runner.invoke(cli, ["archive", "verify", *with_config], env=env)
    assert verified.exit_code == 0 and "files verified" in verified.output, verified.output
    next(root.rglob("events.parquet")).write_bytes(b"not parquet")
    broken = runner.invoke(cli, ["archive", "verify", *with_config], env=env)
    assert broken.exit_code == 1 and "BAD" in broken.output, broken.output
    restored = runner.invoke(cli, ["archive", "restore", *with_config, "--day", days[-1]], env=env)
    assert restored.exit_code == 0 and "rows restored" in restored.output, restored.output
    bad_day = runner.invoke(cli, ["archive", "list", *with_config, "--day", "2026-13-01"], env=env)
    assert bad_day.exit_code == 2 and "YYYY-MM-DD" in bad_day.output
    none = runner.invoke(cli, ["archive", "list", "--model", "churn"], env=env)
    assert none.exit_code == 1 and "--config" in none.output
    plain = tmp_path / "plain.yaml"
    plain.write_text("retention:\n  raw: 10d\n")
    unset = runner.invoke(
        cli, ["archive", "list", "--model", "churn", "--config", str(plain)], env=env
    )
    assert unset.exit_code == 1 and "archive:" in unset.output


def _results(store: Store) -> list[tuple[object, ...]]:
    r = t.metric_results.c
    query = select(r.version_id, r.window_start_us, r.metric, r.column_name, r.value)
    with store.read() as conn:
        return sorted(tuple(row) for row in conn.execute(query.where(r.current == 1)))


def test_an_archived_window_evaluates_to_the_same_results(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from modelwatch.cli import cli

    _fill(churn)
    _monitor(churn, checks=["accuracy", "data_drift"])
    config = tmp_path / "modelwatch.yaml"
    config.write_text(f"archive:\n  url: {(tmp_path / 'archive').as_uri()}\n")
    env = {"MODELWATCH_DATABASE_URL": store.url}
    evaluate = ["evaluate", "--model", "churn", "--since", "2026-10-23"]
    first = CliRunner().invoke(cli, evaluate, env=env)
    assert first.exit_code == 0, first.output
    before = _results(store)
    assert len(before) > 30 and len({row[1] for row in before}) > 30

    (report,) = _retention(store, _archive(store, tmp_path / "archive")).run()
    assert report.rows["events"] > 0
    assert _evaluated_again(store, [*evaluate, "--config", str(config)], env) == before


def _evaluated_again(
    store: Store, evaluate: list[str], env: dict[str, str]
) -> list[tuple[object, ...]]:
    """Forget every run and result, evaluate again through the CLI (which
    attaches the archive from its config), and return the results it stored."""
    from click.testing import CliRunner
    from sqlalchemy import delete

    from modelwatch.cli import cli

    with store.write() as conn:
        conn.execute(delete(t.metric_results))
        conn.execute(delete(t.evaluation_runs))
    store.cold = None
    again = CliRunner().invoke(cli, evaluate, env=env)
    assert again.exit_code == 0, again.output
    return _results(store)


def test_the_planner_reads_each_archived_file_once(
    churn: TestClient, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(churn)
    _monitor(churn)
    archive = _archive(store, tmp_path)
    _retention(store, archive).run()
    model = Registry(store).get_model("churn")
    version = Registry(store).list_versions(model)[0]
    hour_us = 3600 * US
    reads: list[str] = []
    read_table = archive._read_table

    def counted(entry: Any, columns: list[str] | None = None) -> pl.DataFrame:
        reads.append(entry.path)
        return read_table(entry, columns)

    monkeypatch.setattr(archive, "_read_table", counted)
    first = archive.window_counts(model, version.id, hour_us, START_US, END_US)
    assert sum(n for n, _ in first.values()) == sum(
        f.rows for f in archive.files(model, kind="events") if f.version_id == version.id
    )
    files_read = len(reads)
    assert files_read == len(set(reads)) > 0
    assert archive.window_counts(model, version.id, hour_us, START_US, END_US) == first
    assert archive.first_event_us(model, version.id) == archive.first_event_us(model, version.id)
    assert len(reads) == files_read + 1  # the first event's file once, nothing read again
