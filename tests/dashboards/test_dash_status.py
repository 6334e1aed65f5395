"""A model's headline status: the pure rule, and the store reads behind it on both stores."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select, update

from dashboards.app.data import DashData
from dashboards.app.status import (
    FIRING,
    NO_DATA,
    OK,
    PENDING,
    Breach,
    breach_counts,
    check_options,
    headline,
)
from modelwatch.domain import ModelSpec
from modelwatch.store import tables as t
from modelwatch.store.alerts import PENDING as ALERT_PENDING
from modelwatch.store.alerts import AlertStore, fingerprint
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from tests.conftest import CHURN_SPEC
from tests.dashboards.dash_fixtures import FAMILIES, seed


def _breach(**kw: object) -> Breach:
    fields: dict[str, object] = {
        "metric": "data_drift",
        "column": "age",
        "label": "",
        "family": "drift",
        "threshold": 0.05,
        "banded": False,
        "monitor_id": 1,
    }
    fields.update(kw)
    return Breach(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("breach", "options", "counts"),
    [
        (_breach(), {}, False),  # a drift column's default threshold
        (_breach(column="", label="drift_share", threshold=0.5), {}, False),
        (_breach(column="", label="drift_share", threshold=0.4), {"drift_share": 0.4}, True),
        (_breach(column="", label="drift_share"), {"threshold": 0.1}, False),
        (_breach(), {"threshold": 0.1}, True),
        (_breach(), {"thresholds": {"ks": 0.01}}, True),
        (_breach(), {"column_thresholds": {"age": 0.2}}, True),
        (_breach(), {"column_thresholds": {"plan": 0.2}}, False),
        (_breach(banded=True), {}, True),  # a learnt band
        (_breach(metric="accuracy", column="", family="classification", threshold=0.7), {}, True),
        (_breach(metric="accuracy", family="classification", threshold=None), {}, False),
    ],
)
def test_only_breaches_of_user_set_thresholds_or_bands_count(
    breach: Breach, options: dict[str, object], counts: bool
) -> None:
    assert breach_counts(breach, options) is counts


def test_firing_beats_pending_beats_a_counted_breach_beats_ok() -> None:
    alerts = [("pending", "drift on v1"), ("firing", "accuracy-drop on v1")]
    firing = headline(alerts, ["accuracy in breach"], True)
    assert (firing.status, firing.reasons) == (FIRING, ["firing: accuracy-drop on v1"])
    assert headline(alerts[:1], [], True).status == PENDING
    unclaimed = headline([], ["accuracy in breach"], True)
    assert unclaimed.status == PENDING
    assert "accuracy in breach" in unclaimed.tooltip
    assert headline([], [], True).status == OK
    assert headline([], [], False).status == NO_DATA


def test_check_options_by_metric_key() -> None:
    checks = [{"metric": "accuracy", "options": {}}, {"metric": "data_drift", "options": {"x": 1}}]
    assert check_options(checks) == {"accuracy": {}, "data_drift": {"x": 1}}


def _latest_champion(store: Store, model: str) -> tuple[int, int]:
    registry = Registry(store)
    champion = registry.get_model(model)
    (version,) = [v for v in registry.list_versions(champion) if v.alias == "champion"]
    r = t.metric_results
    with store.read() as conn:
        newest = conn.execute(
            select(r.c.window_start_us)
            .where(r.c.version_id == version.id)
            .order_by(r.c.window_start_us.desc())
        ).first()
    assert newest is not None
    return version.id, int(newest[0])


def _set(store: Store, version_id: int, window_us: int, where: object, **values: object) -> None:
    r = t.metric_results
    latest = (r.c.version_id == version_id) & (r.c.window_start_us == window_us)
    with store.write() as conn:
        conn.execute(update(r).where(latest & where).values(**values))  # type: ignore[operator]


def test_headlines_from_alerts_and_the_champions_latest_checks(store: Store) -> None:
    seed(store, 3, ("churn", "fraud"))
    registry = Registry(store)
    registry.create_model(ModelSpec.model_validate({**CHURN_SPEC, "name": "quiet"}), "ana")
    data = DashData(store, list, FAMILIES)
    version_id, window = _latest_champion(store, "fraud")
    r = t.metric_results
    _set(store, version_id, window, r.c.id > 0, status="ok")
    _set(store, version_id, window, r.c.column_name == "age", status="breach")

    shown = data.headlines()
    assert shown["churn"].status == FIRING
    assert "accuracy-drop on v1" in shown["churn"].tooltip
    assert shown["fraud"].status == OK  # a drift column over its default threshold only
    assert shown["quiet"].status == NO_DATA

    options = {"metric": "data_drift", "options": {"column_thresholds": {"age": 0.3}}}
    spec = {"name": "fraud-hourly", "model": "fraud", "checks": [options]}
    with store.write() as conn:
        conn.execute(
            update(t.monitors)
            .where(t.monitors.c.name == "fraud-hourly")
            .values(spec=orjson.dumps(spec).decode())
        )
    (fraud,) = data.headlines("fraud").values()
    assert fraud.status == PENDING
    assert "data_drift · age past 0.05" in fraud.tooltip

    labels = {"alertname": "drift", "model": "fraud", "version": "v1"}
    row = {"fingerprint": fingerprint(labels), "policy": "drift", "model": "fraud"}
    row |= {"labels": labels, "annotations": {}, "value": 0.4, "threshold": 0.3, "trend": []}
    with store.write() as conn:
        alert = {**row, "state": ALERT_PENDING, "consecutive": 1, "window_start_us": window}
        AlertStore(store).save(conn, alert, None, "drift = 0.4")
    fraud = data.headlines("fraud")["fraud"]
    assert (fraud.status, fraud.reasons) == (
        PENDING,
        ["pending: drift on v1 (value 0.4, threshold 0.3)"],
    )
