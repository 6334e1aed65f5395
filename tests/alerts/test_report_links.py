"""Alert notifications link the drill-down report of the run behind the alert's latest window,
in Slack blocks and in webhook payloads; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.notifiers.templates import build_blocks
from alerts.notifiers.webhook import alertmanager_payload
from alerts.service import AlertingService
from modelwatch.config import Config
from modelwatch.outbox import RetryPolicy
from modelwatch.store.engine import Store
from modelwatch.store.runs import RunStore
from tests.alerts.helpers import RecordingNotifier, Results, accuracy, drift

EXTERNAL = "https://mw.example.com"


def _service(store: Store, results: Results, notifier: RecordingNotifier) -> AlertingService:
    config = Config.model_validate(
        {
            "external_url": EXTERNAL,
            "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/"}}],
            "route": {"receiver": "oncall", "group_by": ["model"], "group_wait": "0s"},
            "policies": [
                {
                    "name": "accuracy-low",
                    "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": 0.8}},
                },
                {"name": "feature-drift", "condition": {"status": {"metric": "ks", "column": "*"}}},
            ],
        }
    )
    later = datetime.now(UTC) + timedelta(minutes=1)  # past the group wait
    return AlertingService(
        store,
        results.registry,
        config,
        "test",
        notifiers={"oncall": notifier},
        retry=RetryPolicy(initial_s=0.0, jitter=0.0),
        clock=lambda: later,
    )


def _newest_run(store: Store, results: Results) -> int:
    return RunStore(store).list(results.monitors["churn"], limit=1)[0].id


def _texts(blocks: list[dict[str, Any]]) -> str:
    out = []
    for block in blocks:
        out.append(block.get("text", {}).get("text", ""))
        out += [e.get("text", "") for e in block.get("elements", [])]
    return "\n".join(out)


def test_notifications_link_the_report_of_the_latest_windows_run(store: Store) -> None:
    results = Results(store)
    notifier = RecordingNotifier()
    service = _service(store, results, notifier)
    results.window(0, [accuracy(0.9)])
    results.window(1, [accuracy(0.5), drift("age", 0.4, True), drift("plan", 0.3, True)])
    run_id = _newest_run(store, results)
    service.cycle()

    assert len(notifier.sent) == 1
    n = notifier.sent[0]
    report = f"{EXTERNAL}/v1/runs/{run_id}/report"
    assert len(n.alerts) == 3
    assert {a.annotations["report_url"] for a in n.alerts} == {report}
    # Every alert of the group is about the same run: one link for the whole message.
    assert _texts(build_blocks(n)).count(f"<{report}|Report>") == 1
    payload = alertmanager_payload(n)
    assert payload["commonAnnotations"]["report_url"] == report
    assert all(a["annotations"]["report_url"] == report for a in payload["alerts"])


def test_each_alert_links_its_own_run_when_they_differ(store: Store) -> None:
    results = Results(store, models=("churn",))
    notifier = RecordingNotifier()
    service = _service(store, results, notifier)
    results.window(0, [accuracy(0.5)], version="v1")
    v1_run = _newest_run(store, results)
    results.window(0, [accuracy(0.6)], version="v2")
    v2_run = _newest_run(store, results)
    service.cycle()

    assert len(notifier.sent) == 1
    links = {a.labels["version"]: a.annotations["report_url"] for a in notifier.sent[0].alerts}
    assert links == {
        "v1": f"{EXTERNAL}/v1/runs/{v1_run}/report",
        "v2": f"{EXTERNAL}/v1/runs/{v2_run}/report",
    }
    text = _texts(build_blocks(notifier.sent[0]))
    assert f"<{EXTERNAL}/v1/runs/{v1_run}/report|Report>" in text
    assert f"<{EXTERNAL}/v1/runs/{v2_run}/report|Report>" in text


def test_the_link_follows_the_newest_evaluation_of_a_window(store: Store) -> None:
    results = Results(store)
    notifier = RecordingNotifier()
    service = _service(store, results, notifier)
    results.window(0, [accuracy(0.5)])
    service.cycle()
    results.window(0, [accuracy(0.4)])  # late labels: the window is evaluated again
    rerun = _newest_run(store, results)
    service.cycle()
    alert = next(a for a in service.alerts.all() if a.policy == "accuracy-low")
    assert alert.annotations["report_url"] == f"{EXTERNAL}/v1/runs/{rerun}/report"
