"""The store: SQLAlchemy tables, migrations, engines, bulk writes and columnar reads."""

from modelwatch.store.engine import Store

__all__ = ["Store"]
