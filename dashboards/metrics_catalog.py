"""What the metrics are about: model versions with their aliases, and monitors, read per scrape."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import orjson
from sqlalchemy import select

from modelwatch.domain import ModelSpec
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.layout import ModelLayout

__all__ = ["NO_ALIAS", "VERSION_LABELS", "Catalog", "LayoutCache", "VersionInfo", "load_catalog"]

NO_ALIAS = "none"
VERSION_LABELS = ["model", "version", "alias"]


@dataclass(frozen=True)
class VersionInfo:
    model_id: int
    model: str
    version: str
    alias: str
    task: str

    @property
    def labels(self) -> list[str]:
        """Values for :data:`VERSION_LABELS`."""
        return [self.model, self.version, self.alias]


@dataclass(frozen=True)
class Catalog:
    versions: dict[int, VersionInfo]
    layouts: dict[int, ModelLayout]  # by model id
    model_names: dict[int, str]
    monitors: dict[int, tuple[str, str]]  # id -> (monitor name, model name)

    def by_name(self, model: str, version: str) -> VersionInfo | None:
        return self._by_name.get((model, version))

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], VersionInfo]:
        return {(v.model, v.version): v for v in self.versions.values()}


class LayoutCache:
    """Per-model table layouts; a model's schema never changes once registered."""

    def __init__(self) -> None:
        self._layouts: dict[int, ModelLayout] = {}

    def get(self, model_id: int, spec_json: str) -> ModelLayout:
        layout = self._layouts.get(model_id)
        if layout is None:
            spec = ModelSpec.model_validate(orjson.loads(spec_json))
            layout = self._layouts[model_id] = ModelLayout(model_id, spec)
        return layout


def load_catalog(store: Store, layouts: LayoutCache) -> Catalog:
    """Three small queries: models, versions, monitors."""
    m, v, mon = t.models, t.model_versions, t.monitors
    with store.read() as conn:
        models = conn.execute(select(m.c.id, m.c.name, m.c.task, m.c.spec)).all()
        versions = conn.execute(select(v.c.id, v.c.model_id, v.c.version, v.c.alias)).all()
        monitors = conn.execute(select(mon.c.id, mon.c.name, mon.c.model_id)).all()
    names = {row.id: row.name for row in models}
    tasks = {row.id: row.task for row in models}
    return Catalog(
        versions={
            row.id: VersionInfo(
                row.model_id,
                names[row.model_id],
                row.version,
                row.alias or NO_ALIAS,
                tasks[row.model_id],
            )
            for row in versions
            if row.model_id in names
        },
        layouts={row.id: layouts.get(row.id, row.spec) for row in models},
        model_names=names,
        monitors={
            row.id: (row.name, names[row.model_id]) for row in monitors if row.model_id in names
        },
    )
