"""The runner adds the DLE estimates to a regression monitor's default checks when the
version's reference has targets, and leaves them out when it has none (both stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from fastapi.testclient import TestClient

from evaluators.planner import Planner
from evaluators.runner import Runner
from evaluators.windows import US
from modelwatch.app import create_app
from modelwatch.monitors import MonitorSpec
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.results import ResultQuery, query_results
from modelwatch.store.runs import RunStore

HOUR = 3600
T0 = 1_763_596_800  # a window boundary


def _model(client: TestClient, name: str, target: bool) -> None:
    spec = {"name": name, "task": "regression", "features": [{"name": "x", "type": "numeric"}]}
    assert client.post("/v1/models", json=spec).status_code == 201
    assert client.post(f"/v1/models/{name}/versions", json={"version": "1"}).status_code == 201
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 4_000)
    columns = {"x": x, "prediction": 2 * x}
    if target:
        columns["target"] = 2 * x + rng.normal(0, 0.5 + np.abs(x))
    r = client.post(
        f"/v1/models/{name}/versions/1/reference",
        content=pl.DataFrame(columns).write_csv().encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    events = [
        {
            "request_id": f"{name}-{i}",
            "timestamp": T0 + i,
            "features": {"x": float(v)},
            "prediction": float(2 * v),
        }
        for i, v in enumerate(rng.normal(0, 1, 300))
    ]
    client.app.state.ingestor.predictions({"model": name, "version": "1", "events": events})  # type: ignore[attr-defined]


def test_regression_defaults_include_the_estimates_only_with_targets(
    store: Store, tmp_path: Path
) -> None:
    app = create_app(Settings(database_url=store.url, report_dir=str(tmp_path)), store)
    with TestClient(app) as client:
        _model(client, "with-target", target=True)
        _model(client, "no-target", target=False)
        registry = app.state.registry
        for name in ("with-target", "no-target"):
            spec = MonitorSpec.model_validate({"name": f"{name}-h", "model": name, "window": "1h"})
            monitor = MonitorStore(store, registry).create(spec, "test")
            planner = Planner(store, registry, RunStore(store))
            planner.plan(monitor, (T0 + 2 * HOUR) * US, since_us=T0 * US)
        runner = Runner(store, registry, "test")
        while runner.run_next():
            pass
        models = {m.name: m for m in registry.list_models()}
        for name, expected in (("with-target", True), ("no-target", False)):
            version = registry.list_versions(models[name])[0]
            for key in ("estimated_mae", "estimated_rmse"):
                rows = query_results(store, ResultQuery(version_ids=[version.id], metric=key))
                assert bool(rows) is expected, (name, key, rows)
                if expected:
                    [row] = rows
                    assert row["status"] == "ok", row["detail"]
                    assert row["value"] > 0 and row["n"] == 300
