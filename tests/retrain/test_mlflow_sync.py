"""The MLflow registry sync against a real MLflow server on loopback, on both stores:
versions and references arrive, aliases move both ways, a conflict is MLflow's and is
reported (audit record and warning alert), and nothing flips back and forth."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.files import parse_reference
from modelwatch.app import create_app
from modelwatch.cli import cli
from modelwatch.mlflow_spec import MlflowSpec
from modelwatch.settings import Settings
from modelwatch.store import tables as t
from modelwatch.store.alerts import AlertStore
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from retrain.mlflow_sync import CONFLICT_POLICY, MlflowSync
from tests.alerts.helpers import Results
from tests.conftest import CHURN_SPEC, churn_reference_csv
from tests.retrain.conftest import Loop
from tests.retrain.helpers import PipelineReceiver, World, retrain_config
from tests.retrain.mlflow_server import MlflowServer, mlflow_server
from tests.retrain.test_callback import _post


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture
def names(client: TestClient) -> tuple[str, str]:
    """A modelwatch model and a registered model of its own for each test."""
    suffix = uuid.uuid4().hex[:8]
    spec = {**CHURN_SPEC, "name": f"churn-{suffix}"}
    assert client.post("/v1/models", json=spec).status_code == 201
    return spec["name"], f"churn-clf-{suffix}"


def _sync(store: Store, mlflow: MlflowServer, names: tuple[str, str]) -> MlflowSync:
    model, registered = names
    spec = MlflowSpec.model_validate(
        {
            "tracking_uri": mlflow.url,
            "models": [
                {
                    "registered_model": registered,
                    "model": model,
                    "reference_artifact": "reference.csv",
                }
            ],
        }
    )
    return MlflowSync(store, Registry(store), spec, parse_reference)


def _aliases(store: Store, model: str) -> dict[str, str]:
    registry = Registry(store)
    versions = registry.list_versions(registry.get_model(model))
    return {v.alias: v.version for v in versions if v.alias}


def _audit(store: Store, model: str) -> list[tuple[str, str, str | None]]:
    a = t.audit_log
    with store.read() as conn:
        rows = conn.execute(
            select(a.c.actor, a.c.action, a.c.subject).where(a.c.model == model).order_by(a.c.id)
        )
        return [(r.actor, r.action, r.subject) for r in rows]


def _pipeline(mlflow: MlflowServer, registered: str, versions: int) -> None:
    mlflow.create_model(registered)
    for _ in range(versions):
        mlflow.create_version(registered, {"reference.csv": churn_reference_csv(40)})


def test_one_sync_brings_versions_references_and_aliases(
    store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    model, registered = names
    _pipeline(mlflow, registered, 2)
    mlflow.set_alias(registered, "champion", "1")
    mlflow.set_alias(registered, "challenger", "2")
    (result,) = _sync(store, mlflow, names).sync()
    assert result.problems == []
    assert (result.versions_added, result.references) == (["1", "2"], ["1", "2"])
    assert _aliases(store, model) == {"champion": "1", "challenger": "2"}
    records = _audit(store, model)
    assert ("mlflow", "version.registered", None) in records
    assert ("mlflow", "alias.moved", "champion") in records
    registry = Registry(store)
    version = registry.get_version(registry.get_model(model), "2")
    with store.read() as conn:
        refs = conn.execute(
            select(t.reference_datasets.c.rows).where(
                t.reference_datasets.c.version_id == version.id
            )
        ).all()
    assert [r.rows for r in refs] == [40]

    (again,) = _sync(store, mlflow, names).sync()
    assert (again.versions_added, again.aliases_pulled, again.aliases_pushed) == ([], {}, {})


def test_a_promotion_in_modelwatch_shows_in_mlflow(
    client: TestClient, store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    model, registered = names
    _pipeline(mlflow, registered, 2)
    mlflow.set_alias(registered, "champion", "1")
    mlflow.set_alias(registered, "challenger", "2")
    _sync(store, mlflow, names).sync()
    r = client.put(f"/v1/models/{model}/aliases/champion", json={"version": "2"})
    assert r.status_code == 200, r.text
    (result,) = _sync(store, mlflow, names).sync()
    assert result.aliases_pushed == {"champion": "2"}
    assert mlflow.aliases(registered)["champion"] == "2"
    assert ("system", "mlflow.alias_set", "champion") in _audit(store, model)
    # Settled: the next syncs change nothing on either side.
    for _ in range(2):
        (quiet,) = _sync(store, mlflow, names).sync()
        assert (quiet.aliases_pulled, quiet.aliases_pushed, quiet.conflicts) == ({}, {}, {})
    assert _aliases(store, model)["champion"] == "2"


def test_an_alias_moved_on_both_sides_is_mlflows_and_is_reported(
    client: TestClient, store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    model, registered = names
    _pipeline(mlflow, registered, 3)
    mlflow.set_alias(registered, "champion", "1")
    _sync(store, mlflow, names).sync()
    assert client.put(f"/v1/models/{model}/aliases/champion", json={"version": "2"}).is_success
    mlflow.set_alias(registered, "champion", "3")
    (result,) = _sync(store, mlflow, names).sync()
    assert result.conflicts == {"champion": {"mlflow": "3", "modelwatch": "2", "last_agreed": "1"}}
    assert _aliases(store, model)["champion"] == "3"
    assert mlflow.aliases(registered)["champion"] == "3"
    assert ("mlflow", "mlflow.alias_conflict", "champion") in _audit(store, model)
    (alert,) = AlertStore(store).for_policy(CONFLICT_POLICY).values()
    assert alert.state == "firing" and alert.labels["severity"] == "warning"
    assert alert.model == model and "MLflow won" in alert.annotations["summary"]

    (after,) = _sync(store, mlflow, names).sync()
    assert after.conflicts == {}
    (alert,) = AlertStore(store).for_policy(CONFLICT_POLICY).values()
    assert alert.state == "resolved", "the alias agrees again"


def test_a_new_challenger_in_mlflow_arrives_after_a_promotion_here(
    client: TestClient, store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    """After the challenger became champion here, no version holds challenger: that is
    not a move, so MLflow's next challenger arrives without a conflict."""
    model, registered = names
    _pipeline(mlflow, registered, 2)
    mlflow.set_alias(registered, "champion", "1")
    mlflow.set_alias(registered, "challenger", "2")
    _sync(store, mlflow, names).sync()
    assert client.put(f"/v1/models/{model}/aliases/champion", json={"version": "2"}).is_success
    _sync(store, mlflow, names).sync()
    mlflow.create_version(registered, {"reference.csv": churn_reference_csv(40)})
    mlflow.set_alias(registered, "challenger", "3")
    (result,) = _sync(store, mlflow, names).sync()
    assert result.conflicts == {}
    assert _aliases(store, model) == {"champion": "2", "challenger": "3"}


def test_a_bad_reference_artifact_is_reported_and_the_version_still_arrives(
    store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    _, registered = names
    mlflow.create_model(registered)
    mlflow.create_version(registered, {"reference.csv": b"nonsense,columns\n1,2\n"})
    mlflow.create_version(registered)  # no artifact at all
    (result,) = _sync(store, mlflow, names).sync()
    assert result.versions_added == ["1", "2"] and result.references == []
    assert len(result.problems) == 2
    assert all("reference 'reference.csv' not loaded" in p for p in result.problems)


def test_mlflow_sync_on_the_command_line(
    store: Store, mlflow: MlflowServer, names: tuple[str, str], tmp_path: Path
) -> None:
    model, registered = names
    _pipeline(mlflow, registered, 1)
    mlflow.set_alias(registered, "champion", "1")
    config = tmp_path / "modelwatch.yaml"
    config.write_text(
        f"mlflow:\n  tracking_uri: {mlflow.url}\n  models:\n"
        f"    - {{registered_model: {registered}, model: {model}}}\n"
    )
    env = {"MODELWATCH_DATABASE_URL": store.url}
    result = CliRunner().invoke(cli, ["mlflow", "sync", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert f"{model}: 1 versions added ['1']" in result.output
    assert _aliases(store, model) == {"champion": "1"}


def test_an_unknown_registered_model_is_a_problem_not_a_crash(
    store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    (result,) = _sync(store, mlflow, names).sync()
    assert result.versions_added == []
    assert any("404" in p or "not found" in p for p in result.problems), result.problems


def test_a_retrain_callback_may_name_an_mlflow_version_for_its_reference(
    store: Store, settings: Settings, mlflow: MlflowServer
) -> None:
    registered = f"churn-clf-{uuid.uuid4().hex[:8]}"
    _pipeline(mlflow, registered, 1)
    follow = {
        "tracking_uri": mlflow.url,
        "models": [
            {
                "registered_model": registered,
                "model": "churn",
                "reference_artifact": "reference.csv",
            }
        ],
    }
    results = Results(store)  # churn: v1 champion, v2 challenger
    with PipelineReceiver() as receiver:
        config = retrain_config(receiver.url).model_copy(
            update={"mlflow": MlflowSpec.model_validate(follow)}
        )
        with TestClient(create_app(settings, store, config)) as api:
            state = api.app.state  # type: ignore[attr-defined]
            loop = Loop(api, World(store, results, state.alerting, state.retrain), receiver)
            retrain_id = loop.request_retrain()
            body: dict[str, object] = {"retrain_id": retrain_id, "status": "succeeded"}
            missing = _post(api, {**body, "version": {"version": "7", "mlflow_version": "99"}})
            assert missing.status_code == 422, missing.text
            assert "version.mlflow_version" in missing.text and "no such version" in missing.text
            done = _post(api, {**body, "version": {"version": "7", "mlflow_version": "1"}})
            assert done.status_code == 200, done.text
            versions = {v["version"]: v for v in api.get("/v1/models/churn").json()["versions"]}
    assert versions["7"]["alias"] == "challenger"
    registry = Registry(store)
    version = registry.get_version(registry.get_model("churn"), "7")
    with store.read() as conn:
        rows = conn.execute(
            select(t.reference_datasets.c.rows).where(
                t.reference_datasets.c.version_id == version.id
            )
        ).scalars()
        assert list(rows) == [40]


def test_the_newest_known_version_is_the_cursor(
    store: Store, mlflow: MlflowServer, names: tuple[str, str]
) -> None:
    """Versions are read newest first, a page at a time, up to the first known one."""
    from retrain.mlflow_client import MlflowRegistry

    _, registered = names
    _pipeline(mlflow, registered, 3)
    client = MlflowRegistry(mlflow.url, page_size=1)
    assert [v.version for v in client.versions(registered)] == ["1", "2", "3"]
    assert [v.version for v in client.versions(registered, {"1", "2"})] == ["3"]
    assert client.versions(registered, {"1", "2", "3"}) == []
    sync = _sync(store, mlflow, names)
    sync.client = client
    (result,) = sync.sync()
    assert result.versions_added == ["1", "2", "3"]
    mlflow.create_version(registered)
    (later,) = sync.sync()
    assert later.versions_added == ["4"]
    client.close()
