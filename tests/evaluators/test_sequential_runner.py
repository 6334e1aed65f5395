"""The runner hands the sequential comparison its earlier windows: three hourly windows of
a shadow challenger are summed into one always-valid interval, on SQLite and PostgreSQL,
and a segment sums its own windows only."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from collector.ingest import Ingestor
from evaluators.planner import Planner
from evaluators.runner import Runner
from evaluators.windows import US
from modelwatch.domain import Alias, ModelSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.sequential import paired
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import Registry
from modelwatch.store.results import ResultQuery, query_results
from modelwatch.store.runs import RunStore
from tests.conftest import CHURN_SPEC, churn_event

HOUR, PER_HOUR, HOURS = 3600, 40, 3
T0 = 1_763_596_800  # 2025-11-20T00:00:00Z, a window boundary


def _events(version: str, hour: int) -> dict[str, Any]:
    ids = range(hour * PER_HOUR, (hour + 1) * PER_HOUR)
    # v1 predicts i % 2 (right on odd ids), v2 predicts 1 except on every fourth id
    events = [
        churn_event(
            i,
            timestamp=T0 + hour * HOUR + i,
            prediction=i % 2 if version == "v1" else int(i % 4 != 0),
            segment={"country": "DE" if i % 2 else "FR"},
        )
        for i in ids
    ]
    return {"model": "churn", "version": version, "events": events}


def test_three_windows_are_summed_into_one_interval(store: Store) -> None:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    for v in ("v1", "v2"):
        registry.create_version(model, v, None, "test")
    registry.set_alias(model, Alias.CHAMPION, "v1", "test")
    registry.set_alias(model, Alias.CHALLENGER, "v2", "test")
    ingestor = Ingestor(store, registry)
    for hour in range(HOURS):
        for v in ("v1", "v2"):
            ingestor.predictions(_events(v, hour))
    labels = [{"request_id": f"req-{i}", "label": 1} for i in range(HOURS * PER_HOUR)]
    ingestor.labels({"model": "churn", "labels": labels})
    spec = {
        "name": "hourly",
        "model": "churn",
        "window": "1h",
        "checks": [{"metric": "champion_challenger_sequential", "options": {"mode": "shadow"}}],
        "segments": ["country"],
    }
    monitor = MonitorStore(store, registry).create(MonitorSpec.model_validate(spec), "test")
    end = (T0 + HOURS * HOUR) * US
    Planner(store, registry, RunStore(store)).plan(monitor, end, since_us=T0 * US)
    runner = Runner(store, registry, "w")
    while runner.run_next():
        pass

    v2 = registry.get_version(model, "v2").id
    rows = query_results(store, ResultQuery(version_ids=[v2]))
    whole = sorted(
        (r for r in rows if r["label"] == "accuracy" and not r["segment"]),
        key=lambda r: int(r["window_start_us"]),
    )
    assert [orjson.loads(r["detail"])["windows"] for r in whole] == [1, 2, 3]
    i = np.arange(HOURS * PER_HOUR)
    diff = (i % 4 != 0).astype(float) - (i % 2).astype(float)  # label 1: hit = prediction
    expected = paired(diff.size, diff.sum(), (diff * diff).sum())
    last = whole[-1]
    assert last["n"] == HOURS * PER_HOUR and last["status"] == "ok"
    assert last["value"] == pytest.approx(diff.mean())
    assert last["ci_low"] == pytest.approx(float(expected.low))
    assert orjson.loads(last["detail"])["champion"] == "v1"
    # a segment's figure sums that segment's windows only
    de = [r for r in rows if r["label"] == "accuracy" and r["segment"] == "country=DE"]
    assert max(r["n"] for r in de) == HOURS * PER_HOUR // 2
    assert max(orjson.loads(r["detail"])["windows"] for r in de) == HOURS
