"""The migrations build exactly the catalog that modelwatch/store/tables.py declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from modelwatch.store.engine import Store
from modelwatch.store.migrate import HEAD_REVISION, current_revision, head_revision, upgrade
from modelwatch.store.tables import metadata


def _model_tables(name: object, type_: str, *_: object) -> bool:
    # Per-model data tables are created by the registry, not by migrations.
    return not (type_ == "table" and isinstance(name, str) and name.startswith("mw_m"))


def test_migrations_match_the_declared_tables(store: Store) -> None:
    assert current_revision(store) == head_revision()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": _model_tables}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrade_is_idempotent(store: Store) -> None:
    upgrade(store)
    upgrade(store)
    assert current_revision(store) == head_revision()


def test_the_head_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION


def test_upgrade_from_an_older_revision_runs_the_missing_migrations(store: Store) -> None:
    from alembic import command

    from modelwatch.store.migrate import _config

    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "-1")
    assert current_revision(store) != head_revision()
    upgrade(store)
    assert current_revision(store) == head_revision()


def test_upgrade_indexes_the_label_tables_of_models_registered_before(store: Store) -> None:
    """Retention deletes labels by time: models registered before 0009 get the index too."""
    from alembic import command
    from sqlalchemy import inspect, text

    from modelwatch.domain import ModelSpec
    from modelwatch.store.migrate import _config
    from modelwatch.store.registry import Registry
    from tests.conftest import CHURN_SPEC

    model = Registry(store).create_model(ModelSpec.model_validate(CHURN_SPEC), "test")
    table = f"mw_m{model.id}_labels"
    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
        conn.execute(text(f"DROP INDEX ix_{table}_ts"))
    upgrade(store)
    with store.engine.connect() as conn:
        indexes = {ix["name"] for ix in inspect(conn).get_indexes(table)}
    assert f"ix_{table}_ts" in indexes
