"""The Fleet page's status in the demo world (tests/demo_world.py), in headless Chromium.

In the running demo the quiet ``delivery-eta``'s prediction and target columns breach
``data_drift`` by their default thresholds, with no alert; the simulated minutes of the
test world rarely get there, so the test marks those results of its latest window in
breach, as the demo shows them. The model must show green.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from selenium.webdriver.common.by import By
from sqlalchemy import update

from dashboards.app.data import DashData
from modelwatch.store import tables as t
from modelwatch.store.alerts import FIRING, PENDING, AlertStore
from modelwatch.store.engine import Store
from tests.dashboards.dash_fixtures import chromium, console_errors, require_chromium, wait_for
from tests.demo_world import demo_world

QUIET_MINUTES = 6  # no drift is injected before the test ends


def _default_drift_breaches(store: Store, model: str) -> None:
    results = DashData(store, list, {}).results(model, None)
    champion = results.filter(pl.col("alias") == "champion")
    latest = champion.filter(pl.col("window_start_us") == champion["window_start_us"].max())
    r = t.metric_results
    drift = (r.c.metric == "data_drift") & r.c.column_name.in_(["prediction", "target"])
    runs = r.c.run_id.in_(latest["run_id"].unique().to_list())
    with store.write() as conn:
        changed = conn.execute(update(r).where(runs & drift).values(status="breach")).rowcount
    assert changed == 2


def test_the_quiet_demo_model_is_green_without_an_alert(tmp_path: Path) -> None:
    require_chromium()
    with demo_world(tmp_path) as world:
        sim = world.simulator(drift_at_min=10_000, drift_minutes=1)
        try:
            while world.minutes() < QUIET_MINUTES:
                world.step(sim)
        finally:
            sim.close()
        active = AlertStore(world.store).all([FIRING, PENDING])
        assert [a for a in active if a.model == "delivery-eta"] == []
        _default_drift_breaches(world.store, "delivery-eta")
        with chromium() as driver:
            driver.get(f"{world.server.url}/dash/")
            badge = wait_for(driver, "#status-delivery-eta")
            assert badge.text == "ok", badge.get_attribute("title")
            assert "status-ok" in (badge.get_attribute("class") or "")
            fleet = driver.find_element(By.ID, "fleet-table").text
            assert "delivery-eta" in fleet
            assert console_errors(driver) == []
