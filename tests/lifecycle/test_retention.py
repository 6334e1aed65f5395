"""Retention of the hot store, on SQLite and PostgreSQL: what goes, what stays, in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lifecycle.retention import Retention
from modelwatch.retention import RetentionSpec
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import churn_event

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAYS = 40
PER_DAY = 30


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fill(client: TestClient) -> None:
    """DAYS days of events for v1 and v2 (the same requests), labels a day later, usage."""
    for day in range(DAYS):
        at = NOW - timedelta(days=DAYS - day)
        events = [
            churn_event(day * PER_DAY + i, timestamp=_iso(at + timedelta(minutes=i)))
            for i in range(PER_DAY)
        ]
        for version in ("v1", "v2"):
            body = {"model": "churn", "version": version, "events": events}
            assert client.post("/v1/predictions", json=body).json()["accepted"] == PER_DAY
        labels = [
            {"request_id": e["request_id"], "label": 1, "timestamp": _iso(at + timedelta(days=1))}
            for e in events
        ]
        body = {"model": "churn", "labels": labels}
        assert client.post("/v1/ground-truth", json=body).json()["accepted"] == PER_DAY
        samples = [
            {"timestamp": _iso(at + timedelta(minutes=i)), "latency_ms": 5.0} for i in range(3)
        ]
        body = {"model": "churn", "version": "v1", "samples": samples}
        assert client.post("/v1/resource-usage", json=body).json()["accepted"] == 3


def _monitor(client: TestClient, **extra: Any) -> None:
    body = {
        "name": "churn-daily",
        "model": "churn",
        "window": "1d",
        "label_delay": "3d",
        "backfill": "5d",
        "checks": ["accuracy"],
    } | extra
    assert client.post("/v1/monitors", json=body).status_code == 201, client.post(
        "/v1/monitors", json=body
    ).text


def _service(store: Store, **spec: Any) -> Retention:
    return Retention(
        store, Registry(store), RetentionSpec.model_validate(spec), clock=NOW.timestamp
    )


def _rows(store: Store, table: Any, *where: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _oldest_us(store: Store, table: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.min(table.c.ts_us))).scalar_one())


def test_raw_data_past_retention_goes_in_batches(churn: TestClient, store: Store) -> None:
    _fill(churn)
    _monitor(churn)
    service = _service(store, raw="10d", batch_rows=100)
    model = service.registry.get_model("churn")
    layout = model.layout
    # The window (1 d) and label delay (3 d) settle first, then 10 days of retention,
    # aligned down to the day: nothing from after 2026-11-17 goes.
    (cutoffs,) = service.plan()
    assert cutoffs.raw_before_us == int(datetime(2026, 11, 17, tzinfo=UTC).timestamp() * 1e6)
    events_before = _rows(store, layout.events)
    expired = _rows(store, layout.events, layout.events.c.ts_us < cutoffs.raw_before_us)
    assert 0 < expired < events_before

    (dry,) = service.run(dry_run=True)
    assert dry.rows["events"] == expired
    assert _rows(store, layout.events) == events_before  # a dry run deletes nothing

    seen: list[tuple[str, int]] = []
    (report,) = service.run(progress=lambda _m, kind, n: seen.append((kind, n)))
    assert report.rows == dry.rows
    assert _rows(store, layout.events) == events_before - expired
    assert _oldest_us(store, layout.events) >= cutoffs.raw_before_us
    assert _oldest_us(store, layout.labels) >= cutoffs.raw_before_us
    assert _oldest_us(store, t.usage_samples) >= cutoffs.raw_before_us
    # Batches of 100 rows: progress came batch by batch, never more than a batch at once.
    events_progress = [n for kind, n in seen if kind == "events"]
    assert len(events_progress) >= expired // 100
    assert all(b - a <= 100 for a, b in zip([0, *events_progress], events_progress, strict=False))
    # A second run has nothing left to do.
    (again,) = service.run()
    assert sum(again.rows.values()) == 0


def test_windows_still_taking_labels_are_never_touched(churn: TestClient, store: Store) -> None:
    _fill(churn)
    _monitor(churn, label_delay="30d")
    service = _service(store, raw="1h")
    (report,) = service.run()
    layout = service.registry.get_model("churn").layout
    # 1 d window + 30 d label delay + 1 h: only the days before 2026-10-31 may go.
    assert _oldest_us(store, layout.events) >= int(
        datetime(2026, 10, 31, tzinfo=UTC).timestamp() * 1e6
    )
    assert report.rows["events"] == 2 * PER_DAY * 9  # 2026-10-22 .. 2026-10-30, two versions


def test_results_are_kept_unless_asked_and_never_inside_the_backfill(
    churn: TestClient, store: Store
) -> None:
    _fill(churn)
    _monitor(churn)
    monitor_id = churn.get("/v1/monitors").json()["monitors"][0]["id"]
    from evaluators.scheduler import EvaluationService

    evaluation = EvaluationService(store, Registry(store), clock=NOW.timestamp)
    record = evaluation.monitors.get(monitor_id)
    since = int((NOW - timedelta(days=DAYS)).timestamp() * 1e6)
    evaluation.plan(record, since)
    while evaluation.run_one([monitor_id]) is not None:
        pass
    runs_before = _rows(store, t.evaluation_runs)
    results_before = _rows(store, t.metric_results)
    assert runs_before >= DAYS

    (kept,) = _service(store, raw="10d").run()
    assert kept.rows.get("results") is None
    assert _rows(store, t.evaluation_runs) == runs_before

    (report,) = _service(store, raw="10d", results="2d").run()
    # Asked for 2 days, but the backfill (5 d) plus a window bounds it: runs of windows
    # ending before 2026-11-25 go, with their results.
    horizon_us = int(datetime(2026, 11, 25, tzinfo=UTC).timestamp() * 1e6)
    with store.read() as conn:
        oldest_end = conn.execute(select(func.min(t.evaluation_runs.c.window_end_us))).scalar_one()
        orphans = conn.execute(
            select(func.count())
            .select_from(t.metric_results)
            .where(~t.metric_results.c.run_id.in_(select(t.evaluation_runs.c.id)))
        ).scalar_one()
    assert oldest_end >= horizon_us
    assert orphans == 0
    assert 0 < report.rows["results"] < runs_before
    assert _rows(store, t.evaluation_runs) == runs_before - report.rows["results"]
    assert _rows(store, t.metric_results) < results_before
    # The planner plans nothing again for the windows whose runs went.
    assert evaluation.plan(record) == 0


def test_retention_per_model_through_the_api(churn: TestClient, store: Store) -> None:
    r = churn.get("/v1/models/churn/retention")
    assert r.status_code == 200
    assert r.json()["source"] == "default" and r.json()["raw"] == "30d"
    r = churn.put("/v1/models/churn/retention", json={"raw": "7d", "results": "400d"})
    assert r.status_code == 200, r.text
    assert r.json() | {"raw_before": None, "results_before": None} == {
        "model": "churn",
        "raw": "7d",
        "results": "400d",
        "source": "api",
        "raw_before": None,
        "results_before": None,
    }
    r = churn.put("/v1/models/churn/retention", json={"raw": "10m"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"][-1] == "raw"
    assert churn.put("/v1/models/nope/retention", json={}).status_code == 404
    with store.read() as conn:
        actions = conn.execute(select(t.audit_log.c.action)).scalars().all()
    assert "retention.set" in actions
    assert churn.delete("/v1/models/churn/retention").json()["source"] == "default"


@pytest.mark.parametrize("retention", [{"models": {"ghost": {"raw": "7d"}}}])
def test_config_naming_an_unknown_model_is_refused(store: Store, retention: dict[str, Any]) -> None:
    from modelwatch.app import apply_config
    from modelwatch.config import Config
    from modelwatch.errors import ConfigError

    config = Config.model_validate({"retention": retention})
    with pytest.raises(ConfigError, match=r"retention\.models\.ghost"):
        apply_config(config, store, Registry(store))


def test_the_config_wins_over_the_api(churn: TestClient, store: Store) -> None:
    churn.put("/v1/models/churn/retention", json={"raw": "5d"})
    (cutoffs,) = _service(store).plan("churn")
    assert (cutoffs.source, cutoffs.raw_s) == ("api", 5 * 86_400)
    declared = _service(store, models={"churn": {"raw": "3d"}})
    (cutoffs,) = declared.plan("churn")
    assert (cutoffs.source, cutoffs.raw_s) == ("config", 3 * 86_400)
    app = churn.app
    app.state.retention = declared  # type: ignore[attr-defined]
    r = churn.put("/v1/models/churn/retention", json={"raw": "9d"})
    assert r.status_code == 409
    assert "retention.models.churn" in r.json()["detail"]


def test_cli_dry_run_then_run(churn: TestClient, store: Store, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from modelwatch.cli import cli

    _fill(churn)
    config = tmp_path / "modelwatch.yaml"
    config.write_text("retention:\n  raw: 2h\n  batch_rows: 500\n")
    env = {"MODELWATCH_DATABASE_URL": store.url}
    runner = CliRunner()
    args = ["retention", "run", "--model", "churn", "--config", str(config)]
    dry = runner.invoke(cli, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and "churn (default retention)" in dry.output
    layout = Registry(store).get_model("churn").layout
    assert _rows(store, layout.events) == 2 * DAYS * PER_DAY
    done = runner.invoke(cli, args, env=env)
    assert done.exit_code == 0, done.output
    assert "deleted:" in done.output
    assert _rows(store, layout.events) < 2 * DAYS * PER_DAY
    missing = runner.invoke(cli, ["retention", "run", "--model", "nope"], env=env)
    assert missing.exit_code == 1 and "nope" in missing.output
