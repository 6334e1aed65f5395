"""Drill-down reports (GET /v1/runs/{id}/report) on SQLite and PostgreSQL: generated in the
background, cached per run and data state, failures answered with their cause."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from dashboards.report_data import ReportFrames, ReportTarget, find_target, load_frames
from dashboards.report_render import render_report
from dashboards.reports import ReportService
from evaluators.planner import Planner
from evaluators.runner import Runner
from modelwatch.app import create_app
from modelwatch.monitors import MonitorSpec
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorRecord, MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.runs import RunStore
from tests.conftest import CHURN_SPEC, churn_event

US = 1_000_000
HOUR = 3600
T0 = 1_763_596_800  # a window boundary
N = 1000  # events per window and reference rows: evidently's small-data tests (KS, z)


@dataclass
class CountingRenderer:
    """Wraps a renderer: counts calls, remembers the frames, can hold or fail generation."""

    inner: Any = render_report
    calls: int = 0
    frames: list[ReportFrames] = field(default_factory=list)
    gate: threading.Event | None = None
    error: Exception | None = None

    def __call__(self, target: ReportTarget, frames: ReportFrames) -> str:
        self.calls += 1
        self.frames.append(frames)
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.error is not None:
            raise self.error
        page: str = self.inner(target, frames)
        return page


def fake_page(target: ReportTarget, frames: ReportFrames) -> str:
    return f"<html><body>run {target.run.id}: {frames.window_rows} rows</body></html>"


@dataclass
class World:
    client: TestClient
    store: Store
    registry: Registry
    monitor: MonitorRecord
    reports: ReportService
    render: CountingRenderer
    report_dir: Path

    def send(self, ids: range, version: str = "v1", age_from: float = 60.0) -> None:
        events = [
            churn_event(
                i,
                timestamp=T0 + i % HOUR,
                features={
                    "age": age_from + i % 50,
                    "plan": "pro" if i % 2 else "basic",
                    "active": bool(i % 2),
                    "note": "n",
                },
            )
            for i in ids
        ]
        self.client.app.state.ingestor.predictions(  # type: ignore[attr-defined]
            {"model": "churn", "version": version, "events": events}
        )

    def label(self, ids: range) -> None:
        labels = [{"request_id": f"req-{i}", "label": i % 2} for i in ids]
        self.client.app.state.ingestor.labels(  # type: ignore[attr-defined]
            {"model": "churn", "labels": labels}
        )

    def evaluate(self, version: str = "v1", hour: int = 0) -> int:
        """Plan and run the monitor's closed windows; the newest run of ``version``'s window
        ``hour`` hours after T0."""
        planner = Planner(self.store, self.registry, RunStore(self.store))
        planner.plan(self.monitor, (T0 + 2 * HOUR) * US, since_us=T0 * US)
        runner = Runner(self.store, self.registry, "test")
        while runner.run_next():
            pass
        wanted = self.registry.get_version(self.registry.get_model("churn"), version).id
        runs = RunStore(self.store).list(self.monitor.id)
        return next(
            r.id
            for r in runs
            if r.version_id == wanted and r.window_start_us == (T0 + hour * HOUR) * US
        )

    def get(self, run_id: int, wait: bool = False) -> Any:
        suffix = "?wait=true" if wait else ""
        return self.client.get(f"/v1/runs/{run_id}/report{suffix}")


def _reference_csv() -> bytes:
    frame = pl.DataFrame(
        {
            "age": [30.0 + i % 50 for i in range(N)],
            "plan": ["pro" if i % 2 else "basic" for i in range(N)],
            "active": [bool(i % 2) for i in range(N)],
            "note": ["n"] * N,
            "prediction": [i % 2 for i in range(N)],
            "score": [0.25 if i % 2 == 0 else 0.75 for i in range(N)],
            "target": [i % 2 for i in range(N)],
        }
    )
    return frame.write_csv().encode()


def _world(store: Store, tmp_path: Path, baseline: str = "reference", **settings: Any) -> World:
    report_dir = tmp_path / "reports"
    app = create_app(
        Settings(database_url=store.url, report_dir=str(report_dir), **settings), store
    )
    client = TestClient(app)
    client.__enter__()
    assert client.post("/v1/models", json=CHURN_SPEC).status_code == 201
    for version, alias in (("v1", "champion"), ("v2", "challenger")):
        body = {"version": version, "alias": alias}
        assert client.post("/v1/models/churn/versions", json=body).status_code == 201
    r = client.post(
        "/v1/models/churn/versions/v1/reference",
        content=_reference_csv(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    registry: Registry = app.state.registry
    spec = {
        "name": "hourly",
        "model": "churn",
        "window": "1h",
        "checks": ["accuracy"],
        "baseline": baseline,
        "versions": ["v1", "v2"],
    }
    monitor = MonitorStore(store, registry).create(MonitorSpec.model_validate(spec), "test")
    reports: ReportService = app.state.reports
    render = CountingRenderer()
    reports.render = render
    return World(client, store, registry, monitor, reports, render, report_dir)


@pytest.fixture
def world(store: Store, tmp_path: Path) -> Iterator[World]:
    w = _world(store, tmp_path)
    yield w
    w.client.__exit__(None, None, None)


def _drifted_columns(page: str) -> list[str]:
    listed = re.search(r'<ul id="drifted-columns">(.*?)</ul>', page, re.S)
    assert listed is not None, "the summary lists the drifted columns"
    return re.findall(r"<li>([^:<]+):", listed.group(1))


def test_report_is_generated_in_the_background_then_served_from_the_cache(world: World) -> None:
    world.send(range(N))  # age drifted by +30; plan, active, prediction, score as in reference
    world.label(range(N // 2))
    run_id = world.evaluate()

    first = world.get(run_id)
    assert first.status_code == 202
    assert first.json()["status"] == "generating" and int(first.headers["retry-after"]) > 0

    ready = world.get(run_id, wait=True)
    assert ready.status_code == 200, ready.text
    assert ready.headers["content-type"].startswith("text/html")
    page = ready.text
    assert "drawDashboard" in page  # evidently's report, scripts inline
    assert "Data drift" in page and "Classification quality (labelled rows)" in page
    assert _drifted_columns(page) == ["age"]
    assert f"run {run_id}" in page and "the reference data of version v1" in page

    again = world.get(run_id)
    assert again.status_code == 200 and again.text == page
    assert world.render.calls == 1
    assert [p.name for p in world.report_dir.iterdir()] == [p.name for p in _cached(world)]


def _cached(world: World) -> list[Path]:
    return sorted(world.report_dir.glob("run-*.html"))


def test_concurrent_requests_start_one_generation(world: World) -> None:
    world.send(range(200))
    run_id = world.evaluate()
    world.render.inner = fake_page
    world.render.gate = threading.Event()
    codes: list[int] = []

    def ask() -> None:
        codes.append(world.get(run_id).status_code)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [202] * 8
    world.render.gate.set()
    ready = world.get(run_id, wait=True)
    assert (
        ready.status_code == 200
        and ready.text == f"<html><body>run {run_id}: 200 rows</body></html>"
    )
    assert world.render.calls == 1


def test_unknown_run_is_404(world: World) -> None:
    r = world.get(424242)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found" and "424242" in r.json()["detail"]
    assert world.render.calls == 0


def test_a_reevaluated_window_gets_a_fresh_report(world: World) -> None:
    world.render.inner = fake_page
    world.send(range(300))
    first_run = world.evaluate()
    assert world.get(first_run, wait=True).text.endswith(": 300 rows</body></html>")

    world.send(range(300, 450))  # late events for the same window: a new data state
    second_run = world.evaluate()
    assert second_run != first_run
    assert world.get(second_run, wait=True).text.endswith(": 450 rows</body></html>")
    # The first run's report shows the window as it is now, too.
    assert world.get(first_run, wait=True).text.endswith(": 450 rows</body></html>")
    assert world.get(first_run).status_code == 200
    assert world.render.calls == 3
    assert len(_cached(world)) == 2  # one file per run: the stale one was replaced


def test_a_failed_generation_is_a_500_naming_the_cause_then_retried(world: World) -> None:
    world.send(range(100))
    run_id = world.evaluate()
    world.render.inner = fake_page
    world.render.error = RuntimeError("evidently ran out of memory")

    failed = world.get(run_id, wait=True)
    assert failed.status_code == 500
    assert failed.json()["error"] == "report_failed"
    assert "evidently ran out of memory" in failed.json()["detail"]

    assert world.get(run_id).status_code == 202  # a later request tries again ...
    _wait_until_done(world, run_id)
    after_failure = world.get(run_id)  # ... and without waiting, hears why it failed once
    assert after_failure.status_code == 500 and "out of memory" in after_failure.json()["detail"]

    world.render.error = None
    assert world.get(run_id).status_code == 202
    assert world.get(run_id, wait=True).status_code == 200
    assert world.render.calls == 3
    assert not list(world.report_dir.glob(".*.tmp"))


def _wait_until_done(world: World, run_id: int) -> None:
    generation = world.reports.running(run_id)
    if generation is not None:
        generation.result(30)


def test_reports_sample_a_bounded_reproducible_subset(store: Store, tmp_path: Path) -> None:
    w = _world(store, tmp_path, report_max_rows=100)
    try:
        w.send(range(N))
        run_id = w.evaluate()
        target = find_target(w.store, w.registry, run_id)
        one, two = (load_frames(w.store, target, 100) for _ in range(2))
        assert one.window.height == 100 and one.window_rows == N
        assert one.baseline is not None and one.baseline.height == 100 and one.baseline_rows == N
        assert one.window.equals(two.window) and one.baseline.equals(two.baseline)

        w.render.inner = fake_page
        assert w.get(run_id, wait=True).status_code == 200
        assert w.render.frames[0].window.height == 100  # the service uses the setting
    finally:
        w.client.__exit__(None, None, None)


def test_champion_baseline_compares_with_the_champions_window(store: Store, tmp_path: Path) -> None:
    w = _world(store, tmp_path, baseline="champion")
    try:
        w.send(range(300), version="v1", age_from=30.0)
        w.send(range(1000, 1400), version="v2")
        page = w.get(w.evaluate("v2"), wait=True).text
        assert "the champion (version v1) over the same window" in page
        assert _drifted_columns(page) == ["age"]
        frames = w.render.frames[0]
        assert frames.window_rows == 400 and frames.baseline_rows == 300
    finally:
        w.client.__exit__(None, None, None)


def test_an_empty_window_gets_a_page_that_says_so(store: Store, tmp_path: Path) -> None:
    w = _world(store, tmp_path, baseline="reference")
    try:
        w.send(range(100), version="v2")
        run_id = w.evaluate("v2", hour=1)  # the challenger is serving but got no traffic
        page = w.get(run_id, wait=True)
        assert page.status_code == 200
        assert "no events: nothing to compare" in page.text
    finally:
        w.client.__exit__(None, None, None)


def test_one_class_of_labels_still_shows_the_drift(world: World) -> None:
    world.send(range(300))
    world.label(range(1, 300, 2))  # only class 1 so far: evidently cannot score a binary model
    page = world.get(world.evaluate(), wait=True)
    assert page.status_code == 200
    assert _drifted_columns(page.text) == ["age"]
    assert "Quality of the labelled rows not shown: ValueError" in page.text


REGRESSION_SPEC = {
    "name": "eta",
    "task": "regression",
    "features": [{"name": "distance", "type": "numeric"}, {"name": "city", "type": "categorical"}],
}


def test_regression_models_get_regression_quality(store: Store, tmp_path: Path) -> None:
    w = _world(store, tmp_path)
    try:
        assert w.client.post("/v1/models", json=REGRESSION_SPEC).status_code == 201
        assert w.client.post("/v1/models/eta/versions", json={"version": "1"}).status_code == 201
        reference = pl.DataFrame(
            {
                "distance": [float(i % 40) for i in range(400)],
                "city": ["a", "b"] * 200,
                "prediction": [float(i % 40) * 2 for i in range(400)],
                "target": [float(i % 40) * 2 + 1 for i in range(400)],
            }
        )
        r = w.client.post(
            "/v1/models/eta/versions/1/reference",
            content=reference.write_csv().encode(),
            headers={"content-type": "text/csv"},
        )
        assert r.status_code == 201, r.text
        events = [
            {
                "request_id": f"eta-{i}",
                "timestamp": T0 + i,
                "features": {"distance": float(i % 40), "city": "c" if i % 2 else "a"},
                "prediction": float(i % 40) * 2,
            }
            for i in range(400)
        ]
        ingestor = w.client.app.state.ingestor  # type: ignore[attr-defined]
        ingestor.predictions({"model": "eta", "version": "1", "events": events})
        labels = [{"request_id": f"eta-{i}", "label": float(i % 40) * 2 + 5} for i in range(200)]
        ingestor.labels({"model": "eta", "labels": labels})
        spec = {"name": "eta-hourly", "model": "eta", "window": "1h", "checks": ["mae"]}
        monitor = MonitorStore(w.store, w.registry).create(MonitorSpec.model_validate(spec), "t")
        Planner(w.store, w.registry, RunStore(w.store)).plan(
            monitor, (T0 + 2 * HOUR) * US, since_us=T0 * US
        )
        runner = Runner(w.store, w.registry, "test")
        while runner.run_next():
            pass
        run_id = RunStore(w.store).list(monitor.id)[-1].id
        page = w.get(run_id, wait=True)
        assert page.status_code == 200, page.text
        assert "Regression quality (labelled rows)" in page.text
        assert _drifted_columns(page.text) == ["city"]  # "c" never occurs in the reference
    finally:
        w.client.__exit__(None, None, None)
