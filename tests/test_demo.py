"""The README's run command: the demo serves the API and its simulated models' traffic lands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from modelwatch.store.stats import version_stats


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_sends_predictions_labels_and_usage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    env = {**os.environ, "MODELWATCH_DATABASE_URL": url}
    cmd = [
        sys.executable,
        "-m",
        "modelwatch.cli",
        "demo",
        "--port",
        str(_free_port()),
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
