"""Per-model data tables: one typed column per feature.

Events, labels and reference rows are stored in tables created for each model
when it is registered (``mw_m{id}_events``, ``mw_m{id}_labels``,
``mw_m{id}_reference``), with one column per feature, score and segment key.
Typed columns write faster and read back into polars several times faster than
a JSON column (figures in ``bench/RESULTS.md``). Columns are named by position
(``f_0``, ``s_0``, ``g_0``) so that any feature name is safe; the mapping is
the model's schema, whose feature order is fixed at registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from modelwatch.domain import FeatureType, ModelSpec, Task

__all__ = ["ColumnKind", "ModelLayout", "StorageColumn"]

REQUEST_ID_MAX = 128


class ColumnKind(StrEnum):
    FLOAT = "float"
    TEXT = "text"
    BOOL = "bool"


_FEATURE_KIND = {
    FeatureType.NUMERIC: ColumnKind.FLOAT,
    FeatureType.CATEGORICAL: ColumnKind.TEXT,
    FeatureType.TEXT: ColumnKind.TEXT,
    FeatureType.BOOLEAN: ColumnKind.BOOL,
}


def _sql_type(kind: ColumnKind) -> TypeEngine[Any]:
    if kind is ColumnKind.FLOAT:
        return Float(precision=53)
    if kind is ColumnKind.BOOL:
        return Boolean(create_constraint=False)
    return Text()


@dataclass(frozen=True)
class StorageColumn:
    """A stored column: its name in the table and the name users know it by."""

    name: str
    source: str
    kind: ColumnKind

    def column(self) -> Column[Any]:
        return Column(self.name, _sql_type(self.kind), nullable=True)


@dataclass(frozen=True)
class ModelLayout:
    model_id: int
    spec: ModelSpec

    @property
    def prefix(self) -> str:
        return f"mw_m{self.model_id}"

    @cached_property
    def features(self) -> list[StorageColumn]:
        return [
            StorageColumn(f"f_{i}", f.name, _FEATURE_KIND[f.type])
            for i, f in enumerate(self.spec.features)
        ]

    @cached_property
    def label_kind(self) -> ColumnKind:
        return ColumnKind.FLOAT if self.spec.task is Task.REGRESSION else ColumnKind.TEXT

    @cached_property
    def prediction(self) -> StorageColumn:
        return StorageColumn("prediction", self.spec.prediction, self.label_kind)

    @cached_property
    def scores(self) -> list[StorageColumn]:
        """Binary: one ``score`` (probability of the positive class); multiclass: one per class."""
        if self.spec.task is Task.BINARY:
            return [StorageColumn("score", "score", ColumnKind.FLOAT)]
        if self.spec.task is Task.MULTICLASS:
            return [
                StorageColumn(f"s_{i}", f"score_{c}", ColumnKind.FLOAT)
                for i, c in enumerate(self.spec.class_list)
            ]
        return []

    @cached_property
    def segments(self) -> list[StorageColumn]:
        return [
            StorageColumn(f"g_{i}", key, ColumnKind.TEXT)
            for i, key in enumerate(self.spec.segments)
        ]

    @cached_property
    def event_value_columns(self) -> list[StorageColumn]:
        """Every column of an event after its keys, in storage order."""
        return [self.prediction, *self.scores, *self.features, *self.segments]

    @cached_property
    def event_columns(self) -> list[str]:
        return ["version_id", "request_id", "ts_us", "received_us"] + [
            c.name for c in self.event_value_columns
        ]

    @cached_property
    def reference_value_columns(self) -> list[StorageColumn]:
        target = StorageColumn("target", self.spec.target, self.label_kind)
        return [self.prediction, *self.scores, *self.features, target]

    @cached_property
    def tables(self) -> tuple[Table, Table, Table]:
        md = MetaData()
        p = self.prefix
        pk = BigInteger().with_variant(Integer, "sqlite")
        events = Table(
            f"{p}_events",
            md,
            Column("id", pk, primary_key=True, autoincrement=True),
            Column("version_id", Integer, nullable=False),
            Column("request_id", String(REQUEST_ID_MAX), nullable=False),
            Column("ts_us", BigInteger, nullable=False),
            Column("received_us", BigInteger, nullable=False),
            *(c.column() for c in self.event_value_columns),
            # request_id leads the unique key so that joins to labels by request id use it.
            UniqueConstraint("request_id", "version_id", name=f"uq_{p}_events_request"),
            Index(f"ix_{p}_events_version_ts", "version_id", "ts_us"),
        )
        labels = Table(
            f"{p}_labels",
            md,
            Column("request_id", String(REQUEST_ID_MAX), primary_key=True),
            Column("label", _sql_type(self.label_kind), nullable=False),
            Column("ts_us", BigInteger, nullable=False),
            Column("received_us", BigInteger, nullable=False),
            # Retention deletes labels by their time, in batches.
            Index(f"ix_{p}_labels_ts", "ts_us"),
        )
        reference = Table(
            f"{p}_reference",
            md,
            Column("id", pk, primary_key=True, autoincrement=True),
            Column("dataset_id", Integer, nullable=False),
            *(c.column() for c in self.reference_value_columns),
            Index(f"ix_{p}_reference_dataset", "dataset_id"),
        )
        return events, labels, reference

    @property
    def events(self) -> Table:
        return self.tables[0]

    @property
    def labels(self) -> Table:
        return self.tables[1]

    @property
    def reference(self) -> Table:
        return self.tables[2]
