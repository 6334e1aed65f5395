"""Schema migrations (Alembic), run programmatically: ``modelwatch db upgrade``.

Alembic is imported only when a migration may have to run: a store already at
:data:`HEAD_REVISION` is recognised by one query, so commands that upgrade first
(``modelwatch evaluate``) start without loading Alembic and its script directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from modelwatch.store.engine import Store

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "HEAD_REVISION",
    "current_revision",
    "head_revision",
    "is_current",
    "schema_problem",
    "upgrade",
]

_HERE = Path(__file__).parent / "migrations"
HEAD_REVISION = "0012"
"""The newest migration's revision; a test keeps it equal to Alembic's head."""


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _stored_revision(store: Store) -> str | None:
    """The store's revision by plain SQL, or None when it has none (or no table yet)."""
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def is_current(store: Store) -> bool:
    return current_revision(store) == head_revision()


def schema_problem(store: Store) -> str | None:
    """None when the store's schema is the one this modelwatch runs on; else what is wrong
    and what to do: a store behind it needs ``modelwatch db upgrade``, one ahead of it (a
    newer modelwatch migrated it) needs this process upgraded, not the store."""
    from alembic.script import ScriptDirectory

    stored = current_revision(store)
    if stored == HEAD_REVISION:
        return None
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    if stored is None or stored in known:
        return (
            f"store schema is behind (revision {stored or 'none'}, this modelwatch needs "
            f"{HEAD_REVISION}): run 'modelwatch db upgrade'"
        )
    return (
        f"store schema is ahead (revision {stored}, unknown to this modelwatch, which runs "
        f"on {HEAD_REVISION}): a newer modelwatch migrated it; upgrade this process"
    )


def upgrade(store: Store, revision: str = "head") -> None:
    if revision == "head" and _stored_revision(store) == HEAD_REVISION:
        return
    from alembic import command

    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
