"""Stored data for the Dash tests and benchmark, and a headless Chromium to look at it.

``seed`` writes a model with champion, challenger and an alias history, hourly
evaluation results (performance, drift per feature, quality, cost and latency, the
challenger against the champion) ending at the current hour, and a firing alert.
Runs and results are bulk-inserted straight into the store's tables: the evaluators'
own path is tested elsewhere and would take minutes for a month of windows.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from modelwatch.app import create_app
from modelwatch.config import Config
from modelwatch.domain import Alias, ModelSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store import tables as t
from modelwatch.store.alerts import FIRING, PENDING, AlertStore, fingerprint
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC, IN_CI, free_port

__all__ = [
    "FAMILIES",
    "Seeded",
    "chromium",
    "console_errors",
    "figure",
    "require_chromium",
    "screenshot",
    "seed",
    "serving",
    "wait_for",
    "wait_until",
]

HOUR_US = 3600 * 1_000_000
CHROMIUM = "/usr/bin/chromium"  # Debian's packages (scripts/system-deps)
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
FEATURES = ("age", "plan", "active", "tenure", "spend")
# The metric keys the seeded results use, with their evaluator families.
FAMILIES = {
    "accuracy": "classification",
    "f1": "classification",
    "roc_auc": "classification",
    "precision": "classification",
    "recall": "classification",
    "brier": "classification",
    "data_drift": "drift",
    "missing_rate": "quality",
    "volume": "quality",
    "latency": "cost",
    "cost_per_1k": "cost",
    "champion_challenger": "comparison",
}
PERFORMANCE = ("accuracy", "f1", "roc_auc", "precision", "recall", "brier")


def require_chromium() -> None:
    """Skip without Chromium and its driver; under CI=true fail instead."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"headless browser tests need {', '.join(missing)} (scripts/system-deps)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass(frozen=True)
class Seeded:
    model: str
    windows_us: list[int]
    version_ids: dict[str, int]
    alert_id: int


def _result(run: dict[str, Any], metric: str, value: float | None, **extra: Any) -> dict[str, Any]:
    row = {
        "run_id": run["id"],
        "monitor_id": run["monitor_id"],
        "version_id": run["version_id"],
        "window_start_us": run["window_start_us"],
        "window_end_us": run["window_end_us"],
        "current": 1,
        "segment": "",
        "metric": metric,
        "column_name": "",
        "label": "",
        "value": value,
        "p_value": None,
        "ci_low": None,
        "ci_high": None,
        "threshold": None,
        "n": 500,
        "status": "ok",
        "detail": "",
    }
    row.update(extra)
    return row


def _window_results(
    run: dict[str, Any], i: int, rng: np.random.Generator, challenger: bool
) -> list[dict[str, Any]]:
    rows = [_result(run, m, float(rng.uniform(0.6, 0.95))) for m in PERFORMANCE]
    accuracy = rows[0]
    accuracy["threshold"] = 0.7
    accuracy["status"] = "breach" if accuracy["value"] < 0.7 else "ok"
    statistics = rng.uniform(0.0, 0.4, len(FEATURES))
    p_values = rng.uniform(0.0, 1.0, len(FEATURES))
    for feature, stat, p in zip(FEATURES, statistics, p_values, strict=True):
        status = "breach" if p < 0.05 else "ok"
        rows.append(
            _result(
                run,
                "data_drift",
                float(stat),
                column_name=feature,
                p_value=float(p),
                threshold=0.05,
                status=status,
            )
        )
    rows.append(_result(run, "data_drift", float(np.mean(p_values < 0.05)), label="drift_share"))
    rows.append(_result(run, "missing_rate", float(rng.uniform(0, 0.05)), column_name="age"))
    rows.append(_result(run, "volume", float(400 + i % 24 * 10)))
    for label, base in (("p50", 20.0), ("p95", 45.0), ("p99", 80.0)):
        value = base + float(rng.uniform(0, 5))
        rows.append(_result(run, "latency", value, column_name="latency_ms", label=label))
    rows.append(_result(run, "cost_per_1k", float(rng.uniform(0.1, 0.2))))
    if challenger:
        for label in ("accuracy", "f1"):
            diff = float(rng.uniform(-0.05, 0.05))
            rows.append(
                _result(
                    run,
                    "champion_challenger",
                    diff,
                    label=label,
                    ci_low=diff - 0.02,
                    ci_high=diff + 0.02,
                    p_value=0.3,
                )
            )
    return rows


def _catalog(store: Store, registry: Registry, name: str) -> tuple[dict[str, int], int]:
    model = registry.create_model(ModelSpec.model_validate({**CHURN_SPEC, "name": name}), "ana")
    registry.create_version(model, "v1", Alias.CHAMPION, "ana")
    registry.create_version(model, "v3", Alias.CHALLENGER, "ana")
    registry.create_version(model, "v2", None, "ben")
    registry.set_alias(model, Alias.CHALLENGER, "v2", "ben")  # v3 -> v2: an alias move
    versions = {v.version: v.id for v in registry.list_versions(model)}
    spec = MonitorSpec.model_validate({"name": f"{name}-hourly", "model": name, "checks": []})
    monitor_id = MonitorStore(store, registry).create(spec, "ana").id
    return versions, monitor_id


def seed(store: Store, windows: int, models: Sequence[str] = ("churn", "fraud")) -> Seeded:
    """Hourly results for ``windows`` hours ending at the current hour, for each model;
    the first model also gets a firing alert (and its pending transition before)."""
    registry = Registry(store)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    end_us = int(now.timestamp()) * 1_000_000
    starts = [end_us - (windows - i) * HOUR_US for i in range(windows)]
    rng = np.random.default_rng(7)
    first: dict[str, int] = {}
    for name in models:
        versions, monitor_id = _catalog(store, registry, name)
        first = first or versions
        runs, results = [], []
        for alias_version in ("v1", "v2"):
            for start in starts:
                run = {
                    "monitor_id": monitor_id,
                    "version_id": versions[alias_version],
                    "window_start_us": start,
                    "window_end_us": start + HOUR_US,
                    "segment_key": "",
                    "data_state": "s",
                    "status": "done",
                    "current": 1,
                    "attempts": 1,
                    "finished_at": datetime.fromtimestamp((start + HOUR_US) / 1e6, UTC),
                    "duration_ms": 12.0,
                    "n_events": 500,
                    "n_labels": 400,
                    "created_at": now,
                }
                runs.append(run)
        r = t.evaluation_runs
        with store.write() as conn:
            conn.execute(r.insert(), runs)
            ids = conn.execute(
                select(r.c.version_id, r.c.window_start_us, r.c.id).where(
                    r.c.monitor_id == monitor_id
                )
            ).all()
            run_ids = {(v, w): k for v, w, k in ids}
            for k, run in enumerate(runs):
                run["id"] = run_ids[(run["version_id"], run["window_start_us"])]
                challenger = run["version_id"] == versions["v2"]
                results += _window_results(run, k % windows, rng, challenger)
            conn.execute(t.metric_results.insert(), results)
    alert_id = _firing_alert(store, models[0], starts[-1])
    return Seeded(models[0], starts, first, alert_id)


def _firing_alert(store: Store, model: str, window_us: int) -> int:
    alerts = AlertStore(store)
    labels = {"alertname": "accuracy-drop", "model": model, "version": "v1", "severity": "critical"}
    row = {
        "fingerprint": fingerprint(labels),
        "policy": "accuracy-drop",
        "model": model,
        "labels": labels,
        "annotations": {"summary": f"{model} v1 accuracy below 0.7"},
        "value": 0.61,
        "threshold": 0.7,
        "trend": [0.66, 0.61],
        "window_start_us": window_us,
    }
    with store.write() as conn:
        alerts.save(conn, {**row, "state": PENDING, "consecutive": 1}, None, "accuracy = 0.66")
    (pending,) = alerts.all()
    with store.write() as conn:
        alerts.save(conn, {**row, "state": FIRING, "consecutive": 2}, pending, "accuracy = 0.61")
    return pending.id


# --- a served app and a browser ----------------------------------------------------------

POLICIES: dict[str, Any] = {
    "policies": [
        {
            "name": "accuracy-drop",
            "model": "churn",
            "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.7}},
        }
    ]
}


@contextmanager
def serving(store: Store) -> Iterator[str]:
    """``modelwatch serve``'s app (without the scheduler) on a free local port."""
    config = Config.model_validate(POLICIES)
    server = BackgroundServer(
        create_app(Settings(database_url=store.url), store, config), port=free_port()
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def chromium() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM) or CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


POLL_S = 0.5  # selenium's default; a benchmark polls more often or it measures the poll


def wait_for(driver: WebDriver, css: str, timeout: float = 20, poll: float = POLL_S) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=poll).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def wait_until(driver: WebDriver, predicate: Any, timeout: float = 20, poll: float = POLL_S) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=poll).until(lambda d: predicate(d))


def screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, max(1000, min(int(height) + 50, 6000)))
    driver.save_screenshot(str(path))
    return path


_FIGURE_JS = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd.data || !gd.layout) return null;
const flat = (v) => (Array.isArray(v) || ArrayBuffer.isView(v) ? Array.from(v) : v);
const list = (a) => (a == null ? null : Array.from(a, flat));
return {
  title: gd.layout.title && gd.layout.title.text,
  traces: gd.data.map((t) => ({
    name: t.name, type: t.type || 'scatter', x: list(t.x), y: list(t.y), z: list(t.z),
    showlegend: t.showlegend !== false,
  })),
};
"""


def figure(driver: WebDriver, graph_id: str) -> dict[str, Any] | None:
    """The plotly figure a ``dcc.Graph`` shows, read from the page (data as plotly.js holds it)."""
    found: dict[str, Any] | None = driver.execute_script(_FIGURE_JS, f"#{graph_id}")
    return found
