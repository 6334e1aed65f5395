"""The model page with a month of hourly results renders (timing printed, not asserted
tightly: the benchmark in bench/dash_pages.py measures it)."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.webdriver.common.by import By

from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from tests.dashboards.dash_fixtures import (
    chromium,
    console_errors,
    figure,
    require_chromium,
    screenshot,
    seed,
    serving,
    wait_until,
)

MONTH = 30 * 24
GRAPHS = ("metric-graph", "drift-graph", "quality-graph", "cost-graph", "comparison-graph")
GENEROUS_S = 30.0


def _ready(driver: object) -> bool:
    for graph in GRAPHS:
        shown = figure(driver, graph)  # type: ignore[arg-type]
        if not shown or not shown["traces"]:
            return False
    return True


def test_a_month_of_hourly_results_renders_the_model_page(tmp_path: Path) -> None:
    require_chromium()
    store = Store(f"sqlite:///{tmp_path}/month.db")
    upgrade(store)
    seed(store, MONTH, ("churn",))
    with serving(store) as url, chromium() as driver:
        started = time.perf_counter()
        driver.get(f"{url}/dash/models/churn")
        wait_until(driver, _ready, timeout=GENEROUS_S)
        elapsed = time.perf_counter() - started
        print(f"\nmodel page with {MONTH} hourly windows ready in {elapsed:.2f}s")
        accuracy = figure(driver, "metric-graph")["traces"][0]  # type: ignore[index]
        assert len(accuracy["y"]) == MONTH
        runs = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
        assert len(runs) == 24
        screenshot(driver, "dash_model_month")
        assert console_errors(driver) == []
    store.dispose()
