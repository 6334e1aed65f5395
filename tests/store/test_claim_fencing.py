"""Claims whose lease ran out: the worker that took over owns the outcome.

A worker slower than its lease (or one paused, e.g. by a stalled disk) finds on
finishing that another worker has taken its run or delivery over. Its late
results must not be stored beside the new claim's, and its late failure must
not undo the new claim's success (which would send the delivery a third time).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelwatch.outbox import DELIVERED, DeliveryOutcome, Outbox, RetryPolicy
from modelwatch.results import MetricResult
from modelwatch.settings import ENV_DELIVERY_LEASE_S, ENV_RUN_LEASE_S, lease_seconds
from modelwatch.store.engine import Store
from modelwatch.store.runs import MAX_ATTEMPTS, PlannedRun, RunStore
from modelwatch.timeutil import utcnow
from tests.alerts.helpers import HOUR_US, T0_US, Results


def test_leases_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    monkeypatch.setenv(ENV_RUN_LEASE_S, "7.5")
    monkeypatch.setenv(ENV_DELIVERY_LEASE_S, "3")
    assert RunStore(store).lease == timedelta(seconds=7.5)
    assert Outbox(store).lease == timedelta(seconds=3)
    assert RunStore(store, lease_s=1).lease == timedelta(seconds=1)
    monkeypatch.delenv(ENV_RUN_LEASE_S)
    assert RunStore(store).lease == timedelta(minutes=15)
    with pytest.raises(ValueError, match="MODELWATCH_RUN_LEASE_S='soon' is not a number"):
        lease_seconds(ENV_RUN_LEASE_S, 1.0, {ENV_RUN_LEASE_S: "soon"})
    with pytest.raises(ValueError, match="must be positive"):
        lease_seconds(ENV_RUN_LEASE_S, 1.0, {ENV_RUN_LEASE_S: "0"})


def test_a_run_taken_over_is_finished_by_its_new_claim_only(store: Store) -> None:
    results = Results(store)
    version = results.registry.get_version(results.registry.get_model("churn"), "v1")
    monitor = results.monitors["churn"]
    runs = RunStore(store, lease_s=0.001)  # every claim is abandoned at once
    runs.plan([PlannedRun(monitor, version.id, T0_US, T0_US + HOUR_US, "", "e100", 100, 0)])
    slow = runs.claim("worker-a")
    assert slow is not None
    taken = runs.claim("worker-b")
    assert taken is not None and taken.id == slow.id and taken.attempts == 2
    volume = [("", MetricResult("volume", 100.0, 100))]
    assert runs.finish(slow, volume, 1.0) is False
    assert runs.finish(taken, volume, 1.0) is True
    runs.fail(slow, "late failure of the first claim")  # must not reopen the done run
    assert runs.get(slow.id).status == "done"
    with store.read() as conn:
        stored = conn.exec_driver_sql("SELECT COUNT(*) FROM metric_results").scalar()
    assert stored == 1


def test_a_late_failure_does_not_undo_the_new_claims_success(store: Store) -> None:
    outbox = Outbox(store, lease_s=0.001)
    with store.write() as conn:
        outbox.enqueue(
            conn,
            kind="notification",
            stream="hook|g",
            target="hook",
            idempotency_key="k1",
            payload={},
            max_age_s=3600,
        )
    slow = outbox.claim("worker-a")
    assert slow is not None
    taken = outbox.claim("worker-b")
    assert taken is not None and taken.id == slow.id
    retry = RetryPolicy(jitter=0.0)
    ok = DeliveryOutcome(ok=True, status_code=200)
    assert outbox.record(taken, ok, utcnow(), 1.0, retry) == DELIVERED
    late = DeliveryOutcome(ok=False, detail="timed out")
    assert outbox.record(slow, late, utcnow(), 1.0, retry) == DELIVERED
    assert outbox.get(slow.id).status == DELIVERED
    assert outbox.claim("worker-c") is None
    assert [a["ok"] for a in outbox.attempts(slow.id)] == [0, 1]  # both attempts are kept


def test_a_run_abandoned_on_its_last_attempt_fails_instead_of_running_forever(
    store: Store,
) -> None:
    results = Results(store)
    version = results.registry.get_version(results.registry.get_model("churn"), "v1")
    monitor = results.monitors["churn"]
    runs = RunStore(store, lease_s=0.001)  # every claim is abandoned at once
    runs.plan([PlannedRun(monitor, version.id, T0_US, T0_US + HOUR_US, "", "e100", 100, 0)])
    claims = [runs.claim(f"worker-{i}") for i in range(MAX_ATTEMPTS)]  # each worker dies
    assert [c.attempts for c in claims if c is not None] == list(range(1, MAX_ATTEMPTS + 1))
    assert runs.claim("worker-last") is None
    run = runs.get(claims[0].id if claims[0] else 0)
    assert run.status == "failed"
    assert run.error is not None and "abandoned" in run.error
