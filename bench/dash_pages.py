"""Dash pages with a month of hourly results: server-side build time and browser page-ready time.

Data: ``tests.dashboards.dash_fixtures.seed`` with ``--windows`` hourly windows (default
a month, 720) for one model with a champion and a challenger: 6 performance metrics, 5
drift features + drift share, 2 quality, 4 cost/latency figures per window and version,
and 2 comparison figures for the challenger (about 27k result rows). SQLite store in a
temporary directory.

Measures, best of ``--repeat``:
- ``model page data + figures``: :meth:`DashData.results` (one query) and every figure
  of the model page, in this process, no HTTP;
- ``<page> in Chromium``: headless Chromium (Debian's ``/usr/bin/chromium`` and
  ``chromedriver``) from navigation until the page's content is drawn (for the model
  page: every graph has its traces), against ``modelwatch serve``'s app under uvicorn.

    .venv/bin/python -m bench.dash_pages [--windows 720] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import best_of
from dashboards.app.data import DashData
from dashboards.app.figures import (
    comparison_figure,
    cost_figure,
    drift_figure,
    metric_figure,
    quality_figure,
    series_key,
)
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from tests.dashboards.dash_fixtures import (
    FAMILIES,
    chromium,
    figure,
    seed,
    serving,
    wait_for,
    wait_until,
)

GRAPHS = ("metric-graph", "drift-graph", "quality-graph", "cost-graph", "comparison-graph")
PAGES: dict[str, tuple[str, str]] = {
    "fleet": ("/dash/", "#fleet-table"),
    "alerts": ("/dash/alerts", "#history-table"),
    "ledger": ("/dash/ledger", "#ledger-moves-churn"),
}


def build_model_page(data: DashData, champion: int) -> None:
    results = data.results("churn", 30)
    metric_figure(
        results,
        series_key("accuracy", "", ""),
        data.policy_thresholds("churn"),
        data.transitions("churn"),
    )
    drift_figure(results, "data_drift", champion, "value")
    quality_figure(results, champion)
    cost_figure(results)
    comparison_figure(results, "accuracy")


def _graphs_drawn(driver: Any) -> bool:
    return all((figure(driver, g) or {}).get("traces") for g in GRAPHS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=30 * 24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mw-bench-dash-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'dash.db'}")
        upgrade(store)
        seeded = seed(store, args.windows, ("churn",))
        data = DashData(store, list, FAMILIES)
        rows = data.results("churn", None).height
        figures = best_of(args.repeat, lambda: build_model_page(data, seeded.version_ids["v1"]))[0]
        timings = {"model page data + figures (no HTTP)": figures}
        with serving(store) as url, chromium() as driver:

            def model_page() -> None:
                driver.get(f"{url}/dash/models/churn")
                wait_until(driver, _graphs_drawn, timeout=60)

            timings["model page in Chromium"] = best_of(args.repeat, model_page)[0]
            for name, (path, ready) in PAGES.items():

                def page(path: str = path, ready: str = ready) -> None:
                    driver.get(f"{url}{path}")
                    wait_for(driver, ready, timeout=60)

                timings[f"{name} page in Chromium"] = best_of(args.repeat, page)[0]
        store.dispose()
    print(f"\n{args.windows} hourly windows, {rows} result rows, best of {args.repeat}\n")
    print("| measurement | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
