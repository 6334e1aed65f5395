"""Scale-out: three API processes and three workers on one PostgreSQL, and three API
processes of one ``serve --workers 3`` on SQLite or PostgreSQL; each thing done once.

Three ``modelwatch serve --no-scheduler`` processes and three ``modelwatch worker``
processes share a fresh PostgreSQL schema and one config file (a model, a monitor
with one-minute windows evaluated every second, five policies and a webhook receiver).
Labels, then predictions for two versions are sent through all three APIs at once,
each request id through two of them in different orders, so the same rows race
each other. Then: every event and label is stored once and the duplicates are
reported as such; every (monitor, version, window, segment, data state) is claimed
and evaluated once, with one current run per window; every notification reaches
the receiver once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelwatch.background import ALERTING_INTERVAL_S
from modelwatch.results import MetricResult
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from modelwatch.store.runs import PlannedRun, RunStore
from tests.alerts.helpers import HOUR_US, T0_US, Results
from tests.alerts.receivers import ReceivedRequest, WebhookReceiver
from tests.conftest import free_port

PROCESSES = 3
REQUESTS = 600  # distinct request ids, each predicted by both versions
WINDOWS = 5  # closed one-minute windows the events fall in
BATCH = 100
VERSIONS = ("v1", "v2")
# Every prediction is wrong, so each policy fires for each version: one alert group and
# one notification per (policy, version), sent by whichever worker gets there first.
POLICY_BOUNDS = (0.9, 0.8, 0.7, 0.6, 0.5)
GROUPS = len(POLICY_BOUNDS) * len(VERSIONS)


def _config(hook_url: str) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "churn",
                "task": "binary",
                "features": [
                    {"name": "age", "type": "numeric"},
                    {"name": "plan", "type": "categorical"},
                ],
            }
        ],
        "monitors": [
            {
                "name": "churn-minutely",
                "model": "churn",
                "window": "1m",
                "schedule": "1s",
                "label_delay": "1h",
                "backfill": "10m",
                "min_samples": 20,
                "checks": ["accuracy"],
            }
        ],
        "receivers": [{"name": "hook", "webhook": {"url": hook_url}}],
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "version"],
            "group_wait": "0s",
            "group_interval": "1h",
            "repeat_interval": "1h",
        },
        "policies": [
            {
                "name": f"accuracy-below-{bound}",
                "model": "churn",
                "severity": "critical",
                "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": bound}},
            }
            for bound in POLICY_BOUNDS
        ],
    }


@dataclass
class Cluster:
    apis: list[str]
    logs: list[Path]

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in self.logs)


@contextlib.contextmanager
def cluster(url: str, config: Path, logs: Path) -> Iterator[Cluster]:
    """Three APIs and three workers on ``url``; stopped with SIGTERM at the end."""
    env = {**os.environ, "MODELWATCH_DATABASE_URL": url, "MODELWATCH_LOG_LEVEL": "WARNING"}
    base = [sys.executable, "-m", "modelwatch.cli"]
    ports = [free_port() for _ in range(PROCESSES)]
    commands = {
        **{
            f"api-{i}": [*base, "serve", "--port", str(p), "--no-migrate", "--no-scheduler"]
            for i, p in enumerate(ports)
        },
        **{f"worker-{i}": [*base, "worker"] for i in range(PROCESSES)},
    }
    procs: list[subprocess.Popen[bytes]] = []
    files = []
    try:
        for name, cmd in commands.items():
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            files.append(log)
            cmd = [*cmd, "--config", str(config)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        c = Cluster([f"http://127.0.0.1:{p}" for p in ports], [logs / f"{n}.log" for n in commands])
        _wait_healthy(c, procs)
        yield c
        assert all(p.poll() is None for p in procs), "a process died:\n" + c.tail()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in files:
            f.close()


def _wait_healthy(c: Cluster, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    pending = set(c.apis)
    while pending:
        if any(p.poll() is not None for p in procs):
            pytest.fail("a process exited at start:\n" + c.tail())
        if time.monotonic() > deadline:
            pytest.fail(f"{sorted(pending)} not healthy in 90s:\n" + c.tail())
        for api in sorted(pending):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/healthz", timeout=1).status_code == 200:
                    pending.discard(api)
        time.sleep(0.2)


Item = tuple[str, dict[str, Any]]  # (version, event) or ("", label)


def _traffic(now_s: float) -> tuple[list[Item], list[Item], dict[tuple[str, int], int]]:
    """Events of both versions, labels, and the events per (version, window start in µs).
    Every prediction is wrong, so accuracy breaches whichever subset has arrived."""
    first = (int(now_s) // 60 - WINDOWS) * 60
    events: list[Item] = []
    labels: list[Item] = []
    per_window: Counter[tuple[str, int]] = Counter()
    for i in range(REQUESTS):
        ts = first + (i * WINDOWS * 60) // REQUESTS
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        features = {"age": 20.0 + i % 50, "plan": "pro" if i % 3 else "basic"}
        event = {"request_id": f"r{i}", "timestamp": stamp, "features": features, "prediction": 0}
        for version in VERSIONS:
            events.append((version, event))
            per_window[(version, (ts // 60) * 60 * 1_000_000)] += 1
        labels.append(("", {"request_id": f"r{i}", "label": 1, "timestamp": stamp}))
    return events, labels, dict(per_window)


def _bodies(items: list[Item]) -> list[dict[str, Any]]:
    """Batches of up to BATCH items, one per version (labels have none)."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        for version in sorted({v for v, _ in chunk}):
            docs = [doc for v, doc in chunk if v == version]
            if version:
                out.append({"model": "churn", "version": version, "events": docs})
            else:
                out.append({"model": "churn", "labels": docs})
    return out


def _send_overlapping(apis: list[str], path: str, items: list[Item]) -> list[dict[str, int]]:
    """Send every item through all APIs but one, in a different order at each, at once."""
    rng = random.Random(7)
    plan: list[tuple[str, dict[str, Any]]] = []
    for k, api in enumerate(apis):
        mine = [x for i, x in enumerate(items) if i % len(apis) != k]
        rng.shuffle(mine)
        plan += [(api, body) for body in _bodies(mine)]
    rng.shuffle(plan)

    def post(job: tuple[str, dict[str, Any]]) -> dict[str, int]:
        api, body = job
        r = httpx.post(f"{api}{path}", json=body, timeout=60)
        assert r.status_code == 200, f"{api}{path}: {r.status_code} {r.text}"
        out: dict[str, int] = r.json()
        return out

    with ThreadPoolExecutor(max_workers=2 * len(apis)) as pool:
        return list(pool.map(post, plan))


def _delivery_key(request: ReceivedRequest) -> str:
    """What makes a webhook delivery distinct: its group, status and alerts' states."""
    body = request.json()
    alerts = sorted((a["fingerprint"], a["status"], a["startsAt"]) for a in body["alerts"])
    raw = json.dumps([body["groupKey"], body["status"], alerts])
    return hashlib.sha256(raw.encode()).hexdigest()


def _query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store.read() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def _settled(store: Store, expected: dict[tuple[str, int], int]) -> bool:
    """Every event window has a finished run that saw all its events and labels, and
    nothing is pending or running."""
    busy = _query(store, "SELECT COUNT(*) FROM evaluation_runs WHERE status <> 'done'")
    final = _query(
        store,
        "SELECT v.version, r.window_start_us, MAX(r.n_events), MAX(r.n_labels) "
        "FROM evaluation_runs r JOIN model_versions v ON v.id = r.version_id "
        "WHERE r.status = 'done' GROUP BY v.version, r.window_start_us",
    )
    seen = {(v, int(w)): (int(n), int(nl)) for v, w, n, nl in final}
    return busy[0][0] == 0 and all(seen.get(k) == (n, n) for k, n in expected.items())


def test_a_window_keeps_its_newest_run_current_whatever_order_runs_finish(store: Store) -> None:
    """Two workers evaluate two data states of one window; the older finishes last."""
    results = Results(store)
    version = results.registry.get_version(results.registry.get_model("churn"), "v1")
    monitor = results.monitors["churn"]
    runs = RunStore(store)
    window = (T0_US, T0_US + HOUR_US)
    for state, n in (("e100", 100), ("e120", 120)):
        runs.plan([PlannedRun(monitor, version.id, *window, "", state, n, 0)])
    older, newer = runs.claim("worker-a"), runs.claim("worker-b")
    assert older is not None and newer is not None and older.id < newer.id
    runs.finish(newer, [("", MetricResult("volume", 120.0, 120))], 1.0)
    runs.finish(older, [("", MetricResult("volume", 100.0, 100))], 1.0)
    current = [r for r in runs.list(monitor) if r.current]
    assert [(r.id, r.status) for r in current] == [(newer.id, "done")]
    with store.read() as conn:
        values = conn.exec_driver_sql("SELECT value FROM metric_results WHERE current = 1").all()
    assert [v for (v,) in values] == [120.0]  # what the results API and policies read


@pytest.mark.postgres
def test_three_apis_and_three_workers_do_everything_once(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    upgrade(store)  # what the compose file's migrate service does, once
    with WebhookReceiver() as hook:
        config = tmp_path / "modelwatch.yaml"
        config.write_text(yaml.safe_dump(_config(hook.url)))
        with cluster(pg_url, config, tmp_path) as c:
            for version, alias in zip(VERSIONS, ("champion", "challenger"), strict=True):
                body = {"version": version, "alias": alias}
                r = httpx.post(f"{c.apis[0]}/v1/models/churn/versions", json=body, timeout=30)
                assert r.status_code == 201, r.text
            events, labels, expected = _traffic(time.time())
            label_results = _send_overlapping(c.apis, "/v1/ground-truth", labels)
            event_results = _send_overlapping(c.apis, "/v1/predictions", events)
            _assert_stored_once(store, label_results, event_results)
            deadline = time.monotonic() + 60
            while not _settled(store, expected):
                assert time.monotonic() < deadline, "evaluation did not settle:\n" + c.tail()
                time.sleep(0.5)
            hook.wait_for(GROUPS, timeout=30)
            time.sleep(1.5 * ALERTING_INTERVAL_S)  # a second sender would show up by now
        _assert_evaluated_once(store)
        _assert_notified_once(store, hook.requests)
    store.dispose()


@contextlib.contextmanager
def served(url: str, config: Path, logs: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``modelwatch serve --workers PROCESSES`` on ``url``; stopped with SIGTERM, which
    must end it cleanly."""
    env = {**os.environ, "MODELWATCH_DATABASE_URL": url, "MODELWATCH_LOG_LEVEL": "WARNING"}
    port = free_port()
    cmd = [sys.executable, "-m", "modelwatch.cli", "serve", "--port", str(port)]
    cmd += ["--workers", str(PROCESSES), "--config", str(config)]
    with open(logs / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        c = Cluster([f"http://127.0.0.1:{port}"], [logs / "serve.log"])
        try:
            _wait_healthy(c, [proc])
            yield c.apis[0], proc
            assert proc.poll() is None, "serve died:\n" + c.tail()
        finally:
            proc.terminate()
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        assert code == 0, f"serve exited with {code} on SIGTERM:\n" + c.tail()


def _api_processes(parent: int) -> dict[int, float]:
    """CPU seconds of each process uvicorn spawned to serve the API, by pid (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
            if int(fields[1]) == parent and b"spawn_main" in cmdline:
                out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / 100
    return out


def test_serve_workers_share_one_store_and_schedule_once(store_url: str, tmp_path: Path) -> None:
    """``serve --workers 3``: three API processes behind one port, on SQLite as on
    PostgreSQL; the same traffic as above stored once, evaluated and notified once by the
    parent's scheduler, whose state every API process reports on /metrics; an API process
    killed is replaced."""
    store = Store(store_url)
    upgrade(store)
    with WebhookReceiver() as hook:
        config = tmp_path / "modelwatch.yaml"
        config.write_text(yaml.safe_dump(_config(hook.url)))
        with served(store_url, config, tmp_path) as (api, proc):
            for version, alias in zip(VERSIONS, ("champion", "challenger"), strict=True):
                body = {"version": version, "alias": alias}
                r = httpx.post(f"{api}/v1/models/churn/versions", json=body, timeout=30)
                assert r.status_code == 201, r.text
            before = _api_processes(proc.pid)
            assert len(before) == PROCESSES
            events, labels, expected = _traffic(time.time())
            label_results = _send_overlapping([api] * PROCESSES, "/v1/ground-truth", labels)
            event_results = _send_overlapping([api] * PROCESSES, "/v1/predictions", events)
            busy = [p for p, cpu in _api_processes(proc.pid).items() if cpu > before[p]]
            assert len(busy) >= 2, f"one process served everything: {before}"
            _assert_stored_once(store, label_results, event_results)
            deadline = time.monotonic() + 60
            while not _settled(store, expected):
                assert time.monotonic() < deadline, "evaluation did not settle"
                time.sleep(0.5)
            [(done,)] = _query(store, "SELECT COUNT(*) FROM evaluation_runs")
            _kill_one_and_see_it_replaced(proc.pid)
            hook.wait_for(GROUPS, timeout=30)
            time.sleep(1.5 * ALERTING_INTERVAL_S)  # and the parent has published its state
            for _ in range(PROCESSES):  # whichever process answers
                samples = _scrape(api)
                assert samples["modelwatch_scheduler_running"] == 1.0
                assert samples["modelwatch_scheduler_evaluated_runs_total"] >= done > 0
        assert _api_processes(proc.pid) == {}
        _assert_evaluated_once(store, schedulers=1)
        _assert_notified_once(store, hook.requests)
    store.dispose()


def _kill_one_and_see_it_replaced(parent: int) -> None:
    victim = min(_api_processes(parent))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        pids = set(_api_processes(parent))
        if len(pids) == PROCESSES and victim not in pids:
            return
        assert time.monotonic() < deadline, f"{victim} killed, API processes now {pids}"
        time.sleep(0.2)


def _scrape(api: str) -> dict[str, float]:
    """Unlabelled samples of /metrics, fetched on a new connection each time."""
    text = httpx.get(f"{api}/metrics", timeout=30).text
    return {
        name: float(value)
        for name, value in (
            line.split(" ", 1) for line in text.splitlines() if line and line[0] != "#"
        )
        if "{" not in name
    }


def _assert_stored_once(
    store: Store, label_results: list[dict[str, int]], event_results: list[dict[str, int]]
) -> None:
    distinct_events = REQUESTS * len(VERSIONS)
    sent = sum(r["received"] for r in event_results)
    assert sent == distinct_events * (PROCESSES - 1)  # each through two of the three APIs
    assert sum(r["accepted"] for r in event_results) == distinct_events
    assert sum(r["duplicates"] for r in event_results) == sent - distinct_events
    assert sum(r["accepted"] for r in label_results) == REQUESTS
    sent_labels = sum(r["received"] for r in label_results)
    assert sum(r["duplicates"] for r in label_results) == sent_labels - REQUESTS
    assert sum(r["updated"] for r in label_results) == 0
    layout = Registry(store).get_model("churn").layout
    [(rows,)] = _query(store, f"SELECT COUNT(*) FROM {layout.events.name}")
    distinct_rows = f"SELECT DISTINCT request_id, version_id FROM {layout.events.name}"
    [(distinct,)] = _query(store, f"SELECT COUNT(*) FROM ({distinct_rows}) d")
    assert rows == distinct == distinct_events
    [(label_rows,)] = _query(store, f"SELECT COUNT(*) FROM {layout.labels.name}")
    assert label_rows == REQUESTS


def _assert_evaluated_once(store: Store, *, schedulers: int | None = None) -> None:
    """Each run once; ``schedulers``: how many processes claimed runs (None: more than one)."""
    runs = _query(
        store,
        "SELECT monitor_id, version_id, window_start_us, segment_key, data_state, status, "
        "attempts, claimed_by FROM evaluation_runs",
    )
    assert runs
    keys = Counter(r[:5] for r in runs)
    assert max(keys.values()) == 1  # one run per (monitor, version, window, segment, state)
    assert {(r[5], r[6]) for r in runs} == {("done", 1)}  # each claimed once, finished
    workers = Counter(r[7] for r in runs)
    if schedulers is None:
        assert len(workers) > 1, f"one worker did everything: {workers}"
    else:
        assert len(workers) == schedulers, f"runs claimed by {workers}"
    current = _query(
        store,
        "SELECT version_id, window_start_us, segment_key, COUNT(*) FROM evaluation_runs "
        "WHERE current = 1 GROUP BY 1, 2, 3 HAVING COUNT(*) <> 1",
    )
    assert current == []  # one current run per window: the results users read
    twice = _query(
        store,
        "SELECT run_id, metric, segment, column_name, label FROM metric_results "
        "GROUP BY 1, 2, 3, 4, 5 HAVING COUNT(*) > 1",
    )
    assert twice == []


def _assert_notified_once(store: Store, received: list[ReceivedRequest]) -> None:
    keys = Counter(_delivery_key(r) for r in received)
    assert max(keys.values()) == 1, f"a notification arrived twice: {keys}"
    groups = {r.json()["groupKey"] for r in received}
    assert len(groups) == len(received) == GROUPS  # each alert group told once
    deliveries = _query(
        store,
        "SELECT d.status, COUNT(a.id), SUM(a.ok) FROM deliveries d "
        "JOIN delivery_attempts a ON a.delivery_id = d.id GROUP BY d.id, d.status",
    )
    assert [tuple(map(str, d)) for d in deliveries] == [("delivered", "1", "1")] * len(received)
    transitions = _query(
        store,
        "SELECT alert_id, to_state, COUNT(*) FROM alert_transitions GROUP BY 1, 2 "
        "HAVING COUNT(*) > 1",
    )
    assert transitions == []  # no state change recorded twice by concurrent workers
