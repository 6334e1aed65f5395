"""The Dash pages in real headless Chromium against a running modelwatch server (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from modelwatch.store.alerts import AlertStore
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from modelwatch.store.results import ResultQuery, query_results
from tests.dashboards.dash_fixtures import (
    Seeded,
    chromium,
    console_errors,
    figure,
    require_chromium,
    screenshot,
    seed,
    serving,
    wait_for,
    wait_until,
)

WINDOWS = 48
MAX_LEGEND = 8
GRAPHS = (
    "metric-graph",
    "drift-graph",
    "quality-graph",
    "cost-graph",
    "comparison-graph",
    "runs-graph",
)


@pytest.fixture(scope="module")
def dash_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, Seeded]]:
    require_chromium()
    path: Path = tmp_path_factory.mktemp("dash") / "modelwatch.db"
    store = Store(f"sqlite:///{path}")
    upgrade(store)
    seeded = seed(store, WINDOWS)
    with serving(store) as url:
        yield url, store, seeded
    store.dispose()


@pytest.fixture(scope="module")
def dash_browser(dash_site: Any) -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def _open(driver: WebDriver, url: str, ready: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    wait_for(driver, ready)


def _stored(store: Store, model: str, version: str, metric: str) -> list[dict[str, Any]]:
    registry = Registry(store)
    record = registry.get_version(registry.get_model(model), version)
    return query_results(store, ResultQuery([record.id], metric=metric, segment=""))


def _window(x: int) -> int:
    """A plotly x value (milliseconds on a date axis) as microseconds."""
    return x * 1000


def test_fleet_page_shows_every_model_with_status_and_alerts(
    dash_site: tuple[str, Store, Seeded], dash_browser: WebDriver
) -> None:
    url, _, _ = dash_site
    _open(dash_browser, f"{url}/dash/", "#fleet-table")
    rows = {
        r.find_elements(By.TAG_NAME, "td")[0].text: [
            c.text for c in r.find_elements(By.TAG_NAME, "td")
        ]
        for r in dash_browser.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr")
    }
    assert set(rows) == {"churn", "fraud"}
    churn = rows["churn"]
    assert "v1 (champion)" in churn[1] and "v2 (challenger)" in churn[1]
    assert churn[2] == "firing"
    badge = dash_browser.find_element(By.ID, "status-churn")
    assert "accuracy-drop on v1" in (badge.get_attribute("title") or "")
    assert churn[3] == "1"  # the firing alert
    assert rows["fraud"][3] == "0"
    assert churn[5] == str(2 * 24 * 500)  # two versions, 24 windows of 500 events
    screenshot(dash_browser, "dash_fleet")
    assert console_errors(dash_browser) == []


def test_a_model_picked_from_the_dropdown_shows_its_stored_values(
    dash_site: tuple[str, Store, Seeded], dash_browser: WebDriver
) -> None:
    url, store, _ = dash_site
    _open(dash_browser, f"{url}/dash/models/fraud", "#model-picker")
    wait_until(dash_browser, lambda d: (figure(d, "metric-graph") or {}).get("traces"))
    picker = dash_browser.find_element(By.CSS_SELECTOR, "#model-picker input")
    picker.send_keys("churn", Keys.ENTER)
    wait_until(dash_browser, lambda d: d.current_url.endswith("/dash/models/churn"))
    wait_until(dash_browser, lambda d: d.find_element(By.ID, "model-title").text == "churn")
    shown = wait_until(dash_browser, lambda d: _traces(d, "metric-graph", "v1 (champion)"))

    stored = _stored(store, "churn", "v1", "accuracy")
    assert len(stored) == WINDOWS
    assert shown["y"] == pytest.approx([r["value"] for r in stored])
    assert [_window(x) for x in shown["x"]] == [r["window_start_us"] for r in stored]
    names = [t["name"] for t in figure(dash_browser, "metric-graph")["traces"]]  # type: ignore[index]
    assert "alerts" in names and "v2 (challenger)" in names

    heatmap = figure(dash_browser, "drift-graph")["traces"][0]  # type: ignore[index]
    drift = _stored(store, "churn", "v1", "data_drift")
    age = [r["value"] for r in drift if r["column_name"] == "age"]
    assert heatmap["z"][heatmap["y"].index("age")] == pytest.approx(age)

    comparison = dash_browser.find_element(By.ID, "comparison-latest").text
    latest = [r for r in _stored(store, "churn", "v2", "champion_challenger") if r["label"] == "f1"]
    last = latest[-1]
    assert f"[{last['ci_low']:.4g}, {last['ci_high']:.4g}]" in comparison
    link = dash_browser.find_element(By.CSS_SELECTOR, "#runs a")
    assert link.get_attribute("href").startswith(f"{url}/v1/runs/")
    _assert_headline(dash_browser, store)
    for graph in GRAPHS:
        shown = figure(dash_browser, graph)
        assert shown is not None and shown["traces"], graph
        assert any(t["y"] or t["z"] for t in shown["traces"]), graph
        legend = [t for t in shown["traces"] if t["showlegend"] and t["type"] != "heatmap"]
        assert len(legend) <= MAX_LEGEND, (graph, [t["name"] for t in legend])
    screenshot(dash_browser, "dash_model")
    assert console_errors(dash_browser) == []


def _latest(store: Store, metric: str) -> list[dict[str, Any]]:
    rows = _stored(store, "churn", "v1", metric)
    newest = max(r["window_start_us"] for r in rows)
    return [r for r in rows if r["window_start_us"] == newest]


def _assert_headline(driver: WebDriver, store: Store) -> None:
    def text(card: str) -> str:
        return str(driver.find_element(By.ID, card).text)

    assert text("headline-champion") == "champion v1"
    assert text("headline-challengers") == "v2 (challenger)"
    assert driver.find_element(By.ID, "headline-status-badge").text == "firing"
    assert "accuracy-drop on v1" in text("headline-reasons")
    (accuracy,) = _latest(store, "accuracy")
    assert text("headline-performance").startswith(f"accuracy {accuracy['value']:.3g}")
    drift = [r for r in _latest(store, "data_drift") if r["column_name"]]
    drifted = sum(r["status"] == "breach" for r in drift)
    assert text("headline-drift").startswith(f"{drifted} of {len(drift)}")
    (cost,) = _latest(store, "cost_per_1k")
    assert text("headline-cost") == f"{cost['value']:.4g}"
    assert text("headline-alerts") == "1: accuracy-drop"


def _traces(driver: WebDriver, graph: str, name: str) -> dict[str, Any] | None:
    found = figure(driver, graph)
    if not found or found.get("title") != "accuracy":
        return None
    return next((t for t in found["traces"] if t["name"] == name), None)


def test_a_silence_created_on_the_alerts_page_is_stored(
    dash_site: tuple[str, Store, Seeded], dash_browser: WebDriver
) -> None:
    url, store, _ = dash_site
    _open(dash_browser, f"{url}/dash/alerts", "#silence-form")
    assert "accuracy-drop" in dash_browser.find_element(By.ID, "firing-table").text
    assert "pending" in dash_browser.find_element(By.ID, "history-table").text

    def fill(field: str, text: str) -> None:
        box = dash_browser.find_element(By.ID, field)
        box.send_keys(Keys.CONTROL, "a")  # clear() bypasses React: its state keeps the old text
        box.send_keys(Keys.BACKSPACE, text)

    fill("silence-matchers", "model=churn")
    fill("silence-duration", "nonsense")
    fill("silence-comment", "retraining v3")
    fill("silence-creator", "ana")
    dash_browser.find_element(By.ID, "silence-submit").click()
    error = wait_for(dash_browser, "#silence-error").text
    assert error.startswith("duration:")

    fill("silence-duration", "2h")
    dash_browser.find_element(By.ID, "silence-submit").click()
    wait_for(dash_browser, "#silence-created")
    (silence,) = AlertStore(store).silences()
    assert [(m.name, m.op, m.value) for m in silence.matchers] == [("model", "=", "churn")]
    assert (silence.created_by, silence.comment) == ("ana", "retraining v3")
    assert (silence.ends_at - silence.starts_at).total_seconds() == 7200
    listed = httpx.get(f"{url}/v1/silences").json()["silences"]
    assert [s["id"] for s in listed] == [silence.id]
    assert "retraining v3" in dash_browser.find_element(By.ID, "silences-table").text
    screenshot(dash_browser, "dash_alerts")
    assert console_errors(dash_browser) == []


def test_ledger_page_shows_versions_and_who_moved_each_alias(
    dash_site: tuple[str, Store, Seeded], dash_browser: WebDriver
) -> None:
    url, _, _ = dash_site
    _open(dash_browser, f"{url}/dash/ledger", "#ledger-moves-churn")
    moves = [
        [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in dash_browser.find_elements(By.CSS_SELECTOR, "#ledger-moves-churn tbody tr")
    ]
    assert [m[1:] for m in moves] == [
        ["challenger", "v3", "v2", "ben"],
        ["challenger", "—", "v3", "ana"],
        ["champion", "—", "v1", "ana"],
    ]
    versions = dash_browser.find_element(By.ID, "ledger-versions-churn").text
    assert "no reference" in versions and "champion" in versions
    screenshot(dash_browser, "dash_ledger")
    assert console_errors(dash_browser) == []
