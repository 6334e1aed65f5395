"""The README's run commands: the demo serves the API and its simulated models' traffic
lands; with ``--api-url`` it sets up a running service without the demo's config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from demo.run import DemoOptions, run_remote
from modelwatch.app import create_app
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from modelwatch.store.stats import version_stats
from tests.conftest import free_port


def test_demo_sends_predictions_labels_and_usage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    env = {**os.environ, "MODELWATCH_DATABASE_URL": url}
    cmd = [
        sys.executable,
        "-m",
        "modelwatch.cli",
        "demo",
        "--port",
        str(free_port()),
        "--duration",
        "14",
        "--history",
        "1h",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "API docs   http://127.0.0.1:" in done.stdout
    assert "done:" in done.stdout

    store = Store(url)
    registry = Registry(store)
    fraud = registry.get_model("fraud")
    versions = {v.version: v for v in registry.list_versions(fraud)}
    assert versions["v1"].alias == "champion" and versions["v2"].alias == "shadow"
    stats = version_stats(store, fraud)
    v1, v2 = stats[versions["v1"].id], stats[versions["v2"].id]
    assert v1.events > 50 and v1.events == v2.events  # shadow traffic: the same requests
    assert 0 < v1.labels_joined < v1.events  # labels arrive late, and not for every request
    assert v1.usage_samples > 0 and v2.usage_samples > 0
    with store.read() as conn:
        runs = conn.exec_driver_sql("SELECT COUNT(*) FROM evaluation_runs WHERE status = 'done'")
        assert runs.scalar_one() > 0  # the scheduler evaluated the replayed windows
    eta = registry.get_model("delivery-eta")
    assert version_stats(store, eta)[registry.get_version(eta, "v1").id].events > 0
    store.dispose()


def test_remote_demo_registers_models_monitoring_and_sends_traffic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/remote.db"
    store = Store(url)
    upgrade(store)
    app = create_app(Settings(database_url=url), store)  # no config: nothing declared
    server = BackgroundServer(app, "127.0.0.1", free_port())
    server.start()
    first: list[str] = []
    again: list[str] = []
    try:
        options = DemoOptions(api_url=f"{server.url}/", history_s=600, duration=1, drift_for=0)
        stats = run_remote(options, first.append)
        # A second run finds everything registered (409s): it still runs.
        run_remote(
            DemoOptions(api_url=server.url, history_s=60, duration=1, drift_for=0), again.append
        )
        with httpx.Client(base_url=server.url, timeout=30) as http:
            monitors = {m["name"] for m in http.get("/v1/monitors").json()["monitors"]}
            policies = {p["name"]: p["source"] for p in http.get("/v1/policies").json()["policies"]}
            fraud = http.get("/v1/models/fraud").json()
    finally:
        server.stop()
        store.dispose()

    assert monitors == {"fraud-1m", "eta-1m"}
    assert policies == {"feature-drift": "api", "fraud-accuracy": "api"}
    for lines in (first, again):
        assert not [line for line in lines if re.search(r"HTTP [0-9]{3}", line)], lines
        assert any(line.startswith("registered monitors fraud-1m and eta-1m") for line in lines)
        assert any(line.startswith("simulating traffic for modelwatch at") for line in lines)
    versions = {v["version"]: v for v in fraud["versions"]}
    assert versions["v1"]["alias"] == "champion" and versions["v2"]["alias"] == "shadow"
    assert versions["v1"]["events"]["count"] > 0 and stats.predictions > 0
