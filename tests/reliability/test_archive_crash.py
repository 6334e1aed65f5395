"""SIGKILL in the middle of archiving and retention, on SQLite and PostgreSQL.

``modelwatch retention run`` with an archive is killed at random points, again and
again. After every kill: each file the catalog lists is whole (its bytes, SHA-256 and
rows are the catalog's), and every event ever ingested is in the hot store or in a
catalogued file: nothing was deleted that was not archived. A last run to the end
leaves the hot store holding exactly the days after the cut-off and the archive
exactly the days before it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lifecycle.archive import ParquetArchive, attach_archive
from modelwatch.archive import ArchiveSpec
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import churn_event
from tests.lifecycle.test_retention import _iso

pytestmark = pytest.mark.reliability

DAYS = 20
PER_DAY = 4000
KILLS = 6
BATCH = 2000
RAW_DAYS = 5


def _fill(client: TestClient, now: datetime) -> None:
    for day in range(DAYS):
        at = now - timedelta(days=DAYS - day)
        events = [
            churn_event(day * PER_DAY + i, timestamp=_iso(at + timedelta(seconds=i)))
            for i in range(PER_DAY)
        ]
        for version in ("v1", "v2"):
            for start in range(0, PER_DAY, BATCH):
                body = {"model": "churn", "version": version, "events": events[start:][:BATCH]}
                assert client.post("/v1/predictions", json=body).json()["accepted"] == BATCH
        labels = [{"request_id": e["request_id"], "label": 1} for e in events[::2]]
        body = {"model": "churn", "labels": labels}
        assert client.post("/v1/ground-truth", json=body).status_code == 200


def _hot(store: Store) -> set[tuple[int, str]]:
    events = Registry(store).get_model("churn").layout.events
    with store.read() as conn:
        rows = conn.execute(select(events.c.version_id, events.c.request_id)).all()
    return {(int(v), str(r)) for v, r in rows}


def _archived(archive: ParquetArchive) -> set[tuple[int, str]]:
    model = Registry(archive.store).get_model("churn")
    keys: set[tuple[int, str]] = set()
    for entry in archive.files(model, kind="events"):
        verdict = archive.verify(entry)
        assert verdict.ok, verdict.problem  # no partial file is in the catalog
        frame = archive.read_file(entry, model).select("version_id", "request_id")
        keys |= {(int(v), str(r)) for v, r in frame.iter_rows()}
    return keys


def _run(store: Store, config: Path, logs: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MODELWATCH_DATABASE_URL=store.url)
    args = [sys.executable, "-m", "modelwatch.cli", "retention", "run", "--model", "churn"]
    args += ["--config", str(config)]
    return subprocess.Popen(args, env=env, stdout=logs.open("ab"), stderr=subprocess.STDOUT)


def test_kills_during_archiving_lose_nothing_and_catalogue_no_partial_file(
    churn: TestClient, store: Store, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    _fill(churn, now)
    ingested = _hot(store)
    events = Registry(store).get_model("churn").layout.events
    cutoff_us = int((now - timedelta(days=RAW_DAYS)).timestamp() * 1e6)
    cutoff_us -= cutoff_us % (86_400 * 1_000_000)
    with store.read() as conn:
        query = select(func.count()).select_from(events).where(events.c.ts_us < cutoff_us)
        expired = int(conn.execute(query).scalar_one())
    assert 0 < expired < len(ingested)
    assert len(ingested) == 2 * DAYS * PER_DAY
    root = tmp_path / "archive"
    config = tmp_path / "modelwatch.yaml"
    config.write_text(
        f"retention:\n  raw: {RAW_DAYS}d\n  batch_rows: 100\narchive:\n  url: {root.as_uri()}\n"
    )
    spec = ArchiveSpec.model_validate({"url": root.as_uri()})
    archive = attach_archive(store, Registry(store), spec)
    assert archive is not None
    rng = random.Random(20261203)
    logs = tmp_path / "child.log"
    progress: list[tuple[int, int, bool]] = []
    for _ in range(KILLS):
        child = _run(store, config, logs)
        # The first kill lands soon after start-up (~1.3 s of imports), the others later.
        time.sleep(rng.uniform(1.3, 2.0) if not progress else rng.uniform(1.3, 3.5))
        running = child.poll() is None
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        hot, archived = _hot(store), _archived(archive)
        assert hot | archived == ingested, "an event was deleted before it was archived"
        progress.append((len(hot), len(archived), running))
    child = _run(store, config, logs)
    assert child.wait(300) == 0, logs.read_text()[-3000:]
    hot, archived = _hot(store), _archived(archive)
    assert hot | archived == ingested
    # At least one kill landed in the middle of the work (some archived, some still to go).
    assert any(n_hot > len(hot) and n_archived for n_hot, n_archived, _ in progress), progress
    model = Registry(store).get_model("churn")
    entries = archive.files(model, kind="events")
    assert sum(e.rows for e in entries) == len(archived) == expired
    assert len(hot) == len(ingested) - expired
