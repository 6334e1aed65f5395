"""The scheduler plans on every tick while an evaluation is in progress: evaluating
happens on the drain thread, so a long run never holds a monitor's tick (which
APScheduler skips while its previous instance is still running)."""

from __future__ import annotations

import threading
import time
from typing import Any

from evaluators.scheduler import EvaluationService
from modelwatch.store.engine import Store
from tests.evaluators.test_scheduling import HOUR, T0, _send, _setup


def test_ticks_keep_planning_while_a_run_is_being_evaluated(store: Store) -> None:
    registry, ingestor, _, _ = _setup(store, schedule="1s", backfill="1d")
    _send(ingestor, range(0, 10), hour=0)
    service = EvaluationService(store, registry, clock=lambda: T0 + 2 * HOUR)
    evaluating, release = threading.Event(), threading.Event()
    evaluate = service.runner.evaluate

    def blocked(run: Any) -> Any:
        evaluating.set()
        release.wait(60)
        return evaluate(run)

    plans = 0
    plan = service.planner.plan

    def counted(*args: Any, **kwargs: Any) -> int:
        nonlocal plans
        plans += 1
        return plan(*args, **kwargs)

    service.runner.evaluate = blocked  # type: ignore[method-assign]
    service.planner.plan = counted  # type: ignore[method-assign]
    service.start()
    try:
        assert evaluating.wait(30), "no run was evaluated"
        before = plans
        deadline = time.monotonic() + 30
        while plans < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert plans >= before + 2, f"planned {plans - before} times during a 30 s evaluation"
    finally:
        release.set()
        service.shutdown()
    assert service.runs.counts() == {"done": 1}
