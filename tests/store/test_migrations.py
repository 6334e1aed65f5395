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
