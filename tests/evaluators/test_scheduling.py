"""Planning, claiming and running evaluations on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from collector.ingest import Ingestor
from evaluators.base import EvalContext, Family, Metric, register
from evaluators.planner import Planner
from evaluators.runner import Runner
from evaluators.windows import US
from modelwatch.domain import Alias, ModelSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.results import MetricResult, Status
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.results import ResultQuery, query_results
from modelwatch.store.runs import RunStore
from tests.conftest import CHURN_SPEC, churn_event

HOUR = 3600
T0 = 1_763_596_800  # 2025-11-20T00:00:00Z, a window boundary


@register
class RowsMetric(Metric):
    """Test metric: rows and joined labels in the window (and the segment sizes)."""

    key: ClassVar[str] = "test_rows"
    family: ClassVar[Family] = Family.QUALITY

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        labels = int(ctx.window["label"].is_not_null().sum()) if ctx.window.height else 0
        return [
            self.result(float(ctx.window.height), ctx.window.height, label="rows"),
            self.result(float(labels), labels, label="labels"),
        ]


@register
class BrokenMetric(Metric):
    key: ClassVar[str] = "test_broken"
    family: ClassVar[Family] = Family.QUALITY

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        raise RuntimeError("boom")


@register
class SidesMetric(Metric):
    """Test comparison metric: remembers each context (champion window, challenger, baseline)."""

    key: ClassVar[str] = "test_sides"
    family: ClassVar[Family] = Family.COMPARISON
    seen: ClassVar[list[EvalContext]] = []

    def compute(self, ctx: EvalContext) -> list[MetricResult]:
        SidesMetric.seen.append(ctx)
        return [self.result(float(ctx.window.height), ctx.window.height, label="champion")]


def _setup(store: Store, **monitor: Any) -> tuple[Registry, Ingestor, MonitorStore, Any]:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", None, "test")
    ingestor = Ingestor(store, registry)
    monitors = MonitorStore(store, registry)
    spec = {"name": "hourly", "model": "churn", "window": "1h", "checks": ["test_rows"], **monitor}
    record = monitors.create(MonitorSpec.model_validate(spec), "test")
    return registry, ingestor, monitors, record


def _send(ingestor: Ingestor, ids: range, hour: int, country: str = "DE") -> None:
    events = [
        churn_event(i, timestamp=T0 + hour * HOUR + i % 3000, segment={"country": country})
        for i in ids
    ]
    ingestor.predictions({"model": "churn", "version": "v1", "events": events})


def _label(ingestor: Ingestor, ids: range) -> None:
    labels = [{"request_id": f"req-{i}", "label": 1} for i in ids]
    ingestor.labels({"model": "churn", "labels": labels})


def _values(store: Store, label: str) -> dict[int, float | None]:
    rows = query_results(store, ResultQuery(version_ids=[1], metric="test_rows"))
    return {
        (r["window_start_us"] // US - T0) // HOUR: r["value"]
        for r in rows
        if r["label"] == label and r["segment"] == ""
    }


def test_plan_closed_windows_once_and_evaluate(store: Store) -> None:
    registry, ingestor, _, monitor = _setup(store)
    _send(ingestor, range(0, 10), hour=0)
    _send(ingestor, range(10, 15), hour=2)
    _send(ingestor, range(15, 17), hour=3)  # still open at "now"
    planner = Planner(store, registry, RunStore(store))
    now = (T0 + 3 * HOUR + 60) * US
    assert planner.plan(monitor, now, since_us=T0 * US) == 2  # hours 0 and 2 (1 is empty, no alias)
    assert planner.plan(monitor, now, since_us=T0 * US) == 0  # idempotent
    runner = Runner(store, registry, "w1")
    while runner.run_next():
        pass
    assert _values(store, "rows") == {0: 10.0, 2: 5.0}


def test_serving_versions_get_empty_windows_and_oldest_runs_first(store: Store) -> None:
    registry, ingestor, _, monitor = _setup(store)
    model = registry.get_model("churn")
    registry.set_alias(model, Alias.CHAMPION, "v1", "test")
    _send(ingestor, range(0, 4), hour=0)
    _send(ingestor, range(4, 6), hour=3)
    planner = Planner(store, registry, RunStore(store))
    assert planner.plan(monitor, (T0 + 5 * HOUR) * US, since_us=T0 * US) == 5  # hours 0..4
    runner = Runner(store, registry, "w1")
    order = []
    while run := runner.run_next():
        order.append((run.window_start_us // US - T0) // HOUR)
    assert order == [0, 1, 2, 3, 4]
    assert _values(store, "rows") == {0: 4.0, 1: 0.0, 2: 0.0, 3: 2.0, 4: 0.0}


def test_late_labels_re_evaluate_until_the_label_delay(store: Store) -> None:
    registry, ingestor, _, monitor = _setup(store, label_delay="1d")
    _send(ingestor, range(0, 10), hour=0)
    planner, runner = Planner(store, registry, RunStore(store)), Runner(store, registry, "w")
    now = (T0 + 2 * HOUR) * US
    planner.plan(monitor, now, since_us=T0 * US)
    runner.run_next()
    assert _values(store, "labels") == {0: 0.0}
    _label(ingestor, range(0, 4))  # labels arrive after the window closed
    assert planner.plan(monitor, now + HOUR * US, since_us=T0 * US) == 1
    runner.run_next()
    assert _values(store, "labels") == {0: 4.0}
    rows = query_results(
        store, ResultQuery(version_ids=[1], metric="test_rows", current_only=False)
    )
    assert sorted(r["value"] for r in rows if r["label"] == "labels") == [0.0, 4.0]
    assert len({r["run_id"] for r in rows}) == 2 and sum(r["current"] for r in rows) == 2
    _label(ingestor, range(4, 8))
    after_delay = (T0 + 30 * HOUR) * US
    assert planner.plan(monitor, after_delay, since_us=T0 * US) == 0  # final after the delay


def test_segments_are_evaluated_per_value(store: Store) -> None:
    registry, ingestor, _, monitor = _setup(store, segments=["country"])
    _send(ingestor, range(0, 6), hour=0, country="DE")
    _send(ingestor, range(6, 10), hour=0, country="FR")
    Planner(store, registry, RunStore(store)).plan(monitor, (T0 + HOUR) * US, since_us=T0 * US)
    runner = Runner(store, registry, "w")
    while runner.run_next():
        pass
    rows = query_results(store, ResultQuery(version_ids=[1], metric="test_rows"))
    by_segment = {r["segment"]: r["value"] for r in rows if r["label"] == "rows"}
    assert by_segment == {"": 10.0, "country=DE": 6.0, "country=FR": 4.0}


def test_a_champion_baseline_is_read_once_for_comparisons(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, ingestor, _, monitor = _setup(
        store, checks=["test_sides", "test_rows"], baseline="champion", versions=["v2"]
    )
    model = registry.get_model("churn")
    registry.create_version(model, "v2", None, "test")
    registry.set_alias(model, Alias.CHAMPION, "v1", "test")
    registry.set_alias(model, Alias.CHALLENGER, "v2", "test")
    _send(ingestor, range(0, 6), hour=0)
    events = [churn_event(i, timestamp=T0 + i) for i in range(6, 10)]
    ingestor.predictions({"model": "churn", "version": "v2", "events": events})
    Planner(store, registry, RunStore(store)).plan(monitor, (T0 + HOUR) * US, since_us=T0 * US)
    reads: list[int] = []
    window = Runner._window

    def counted(self: Runner, model: Any, version_id: int, run: Any) -> Any:
        reads.append(version_id)
        return window(self, model, version_id, run)

    monkeypatch.setattr(Runner, "_window", counted)
    SidesMetric.seen.clear()
    runner = Runner(store, registry, "w")
    while runner.run_next():
        pass
    v1, v2 = (registry.get_version(model, v).id for v in ("v1", "v2"))
    assert sorted(reads) == sorted([v2, v1])  # its own window, then the champion's once
    [ctx] = SidesMetric.seen
    assert ctx.window.height == 6 and ctx.challenger is not None and ctx.challenger.height == 4
    assert ctx.baseline is ctx.window


def test_a_failing_metric_is_an_error_result_not_a_failed_run(store: Store) -> None:
    registry, ingestor, monitors, _ = _setup(store)
    spec = MonitorSpec.model_validate(
        {"name": "broken", "model": "churn", "checks": ["test_broken", "test_rows"]}
    )
    broken = monitors.create(spec, "test")
    _send(ingestor, range(0, 3), hour=0)
    Planner(store, registry, RunStore(store)).plan(broken, (T0 + HOUR) * US, since_us=T0 * US)
    run = Runner(store, registry, "w").run_next([broken.id])
    assert run is not None
    statuses = {
        r["metric"]: r["status"] for r in query_results(store, ResultQuery(version_ids=[1]))
    }
    assert statuses == {"test_broken": Status.ERROR.value, "test_rows": Status.OK.value}


def test_concurrent_workers_evaluate_every_run_exactly_once(store: Store) -> None:
    registry, ingestor, _, monitor = _setup(store, segments=["country"])
    for hour in range(12):
        _send(ingestor, range(hour * 20, hour * 20 + 20), hour=hour)
    planned = Planner(store, registry, RunStore(store)).plan(
        monitor, (T0 + 12 * HOUR) * US, since_us=T0 * US
    )
    assert planned == 24
    claimed: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        runner = Runner(store, registry, name)
        while run := runner.run_next():
            with lock:
                claimed.append(run.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 24
    with store.read() as conn:
        runs = conn.execute(t.evaluation_runs.select()).all()
        per_run = Counter(r.run_id for r in conn.execute(t.metric_results.select()))
    assert all(r.status == "done" and r.attempts == 1 for r in runs)
    assert set(per_run.values()) == {2}  # overall runs: rows + labels; segment runs: one DE segment


@pytest.fixture
def evaluated(churn: TestClient, store: Store) -> TestClient:
    churn.post("/v1/monitors", json={"name": "hourly", "model": "churn", "checks": ["test_rows"]})
    ingestor = Ingestor(store, churn.app.state.registry)  # type: ignore[attr-defined]
    _send(ingestor, range(0, 5), hour=0)
    service = churn.app.state.evaluation  # type: ignore[attr-defined]
    monitor = service.monitors.get_by_name("hourly")
    service.planner.plan(monitor, (T0 + HOUR) * US, since_us=T0 * US)
    service.drain(5)
    return churn


def test_monitor_and_results_api(evaluated: TestClient) -> None:
    monitors = evaluated.get("/v1/monitors").json()["monitors"]
    assert [m["name"] for m in monitors] == ["hourly"]
    runs = evaluated.get(f"/v1/monitors/{monitors[0]['id']}/runs").json()
    assert runs["counts"] == {"done": 1} and runs["runs"][0]["events"] == 5
    body = evaluated.get(
        "/v1/models/churn/results", params={"metric": "test_rows", "version": "v1"}
    ).json()
    assert sorted((r["label"], r["value"]) for r in body["results"]) == [
        ("labels", 0.0),
        ("rows", 5.0),
    ]
    assert body["results"][0]["window_start"] == "2025-11-20T00:00:00Z"
    since = evaluated.get(
        "/v1/models/churn/results", params={"since": "2025-11-20T01:00:00Z"}
    ).json()
    assert since["results"] == []
    assert evaluated.get("/v1/models/churn/results", params={"version": "v9"}).status_code == 404


def test_unknown_metric_keys_are_rejected_with_the_known_list(churn: TestClient) -> None:
    r = churn.post(
        "/v1/monitors", json={"name": "m", "model": "churn", "checks": ["test_rows", "acuracy"]}
    )
    assert r.status_code == 422
    error = r.json()["errors"][0]
    assert error["loc"] == ["checks", 1, "metric"]
    assert (
        "unknown metric 'acuracy'; known metrics:" in error["msg"] and "test_rows" in error["msg"]
    )
    bad_window = churn.post("/v1/monitors", json={"name": "m", "model": "churn", "window": "7m"})
    assert bad_window.status_code == 422
    assert churn.post("/v1/monitors", json={"name": "m", "model": "nope"}).status_code == 404
