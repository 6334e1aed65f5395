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

__all__ = ["HEAD_REVISION", "current_revision", "head_revision", "is_current", "upgrade"]

_HERE = Path(__file__).parent / "migrations"
HEAD_REVISION = "0008"
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


def upgrade(store: Store, revision: str = "head") -> None:
    if revision == "head" and _stored_revision(store) == HEAD_REVISION:
        return
    from alembic import command

    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
