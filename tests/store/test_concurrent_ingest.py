"""Concurrent batches with overlapping request ids: every id stored once, counts add up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from collector.ingest import Ingestor
from modelwatch.domain import ModelSpec
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC, churn_event


def test_overlapping_batches_from_many_threads(store: Store) -> None:
    registry = Registry(store)
    model = registry.create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    registry.create_version(model, "v1", None, "test")
    ingestor = Ingestor(store, registry)
    # 8 batches of 500, each overlapping the next by half: 2250 distinct ids.
    batches = [[churn_event(i) for i in range(k * 250, k * 250 + 500)] for k in range(8)]

    def send(events: list[dict[str, object]]) -> tuple[int, int]:
        result = ingestor.predictions({"model": "churn", "version": "v1", "events": events})
        return result.accepted, result.duplicates

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(send, batches))
    accepted = sum(a for a, _ in results)
    duplicates = sum(d for _, d in results)
    assert accepted == 2250
    assert accepted + duplicates == 8 * 500
    with store.read() as conn:
        table = model.layout.events
        stored = conn.execute(select(func.count(), func.count(table.c.request_id.distinct()))).one()
    assert tuple(stored) == (2250, 2250)
