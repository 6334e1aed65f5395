"""Dash pages with a month of hourly results: server-side build time and browser page-ready time.

Data: ``tests.dashboards.dash_fixtures.seed`` with ``--windows`` hourly windows (default
a month, 720) for one model with a champion and a challenger: 6 performance metrics, 5
drift features + drift share, 2 quality, 4 cost/latency figures per window and version,
and 2 comparison figures for the challenger (about 27k result rows). SQLite store in a
temporary directory.

Measures, best of ``--repeat``:
- ``model page data + figures``: :meth:`DashData.results` (one query), the headline's
  reads (status, firing alerts, alias moves) and every figure of the model page, in
  this process, no HTTP;
- ``<page> in Chromium``: headless Chromium (Debian's ``/usr/bin/chromium`` and
  ``chromedriver``) from navigation until the page's content is drawn (for the model
  page: every graph has its traces), against ``modelwatch serve``'s app under uvicorn,
  polling the page every :data:`POLL_S` seconds (selenium's default of 0.5 s made
  every figure a multiple of it).

    .venv/bin/python -m bench.dash_pages [--windows 720] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import best_of
from dashboards.app.data import DashData, champion_over_time
from dashboards.app.figures import (
    comparison_figure,
    cost_figure,
    drift_figure,
    metric_figure,
    quality_figure,
    runs_figure,
    series_key,
)
from dashboards.app.pages.model_headline import headline_row
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from tests.dashboards.dash_fixtures import (
    FAMILIES,
    chromium,
    seed,
    serving,
    wait_for,
    wait_until,
)

GRAPHS = (
    "metric-graph",
    "drift-graph",
    "quality-graph",
    "cost-graph",
    "comparison-graph",
    "runs-graph",
)
POLL_S = 0.02
PAGES: dict[str, tuple[str, str]] = {
    "fleet": ("/dash/", "#fleet-table"),
    "alerts": ("/dash/alerts", "#history-table"),
    "ledger": ("/dash/ledger", "#ledger-moves-churn"),
}


def build_model_page(data: DashData) -> None:
    versions = data.versions("churn")
    results = data.results("churn", 30, versions)
    firing = data.firing()
    headline_row(versions, results, data.headlines("churn")["churn"], firing, lambda p: p)
    metric_figure(
        results,
        series_key("accuracy", "", ""),
        data.policy_thresholds("churn"),
        data.transitions("churn"),
    )
    champion = champion_over_time(results, data.alias_moves("churn"))
    drift_figure(champion, "data_drift", None, "value")
    quality_figure(champion, None)
    cost_figure(results)
    comparison_figure(results, "accuracy")
    runs_figure(results)


# Whether every graph has drawn its traces, asked in the page: reading the figures back
# through WebDriver (tests' ``figure``) moves half a megabyte per poll.
_DRAWN_JS = """
return arguments[0].every((id) => {
  const gd = document.querySelector('#' + id + ' .js-plotly-plot');
  return !!(gd && gd._fullLayout && gd.data && gd.data.length);
});
"""


def _graphs_drawn(driver: Any) -> bool:
    return bool(driver.execute_script(_DRAWN_JS, list(GRAPHS)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=30 * 24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mw-bench-dash-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'dash.db'}")
        upgrade(store)
        seed(store, args.windows, ("churn",))
        data = DashData(store, list, FAMILIES)
        rows = data.results("churn", None).height
        figures = best_of(args.repeat, lambda: build_model_page(data))[0]
        timings = {"model page data + figures (no HTTP)": figures}
        with serving(store) as url, chromium() as driver:

            def model_page() -> None:
                driver.get(f"{url}/dash/models/churn")
                wait_until(driver, _graphs_drawn, timeout=60, poll=POLL_S)

            timings["model page in Chromium"] = best_of(args.repeat, model_page)[0]
            for name, (path, ready) in PAGES.items():

                def page(path: str = path, ready: str = ready) -> None:
                    driver.get(f"{url}{path}")
                    wait_for(driver, ready, timeout=60, poll=POLL_S)

                timings[f"{name} page in Chromium"] = best_of(args.repeat, page)[0]
        store.dispose()
    print(f"\n{args.windows} hourly windows, {rows} result rows, best of {args.repeat}\n")
    print("| measurement | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
