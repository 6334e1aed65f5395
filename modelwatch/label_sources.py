"""Label sources as declared: ground truth pulled on a schedule from where it lands.

Labels often land days later in a warehouse table or as files. A ``label_sources:``
entry names one model and either a SQL query over any SQLAlchemy URL or a glob of
Parquet/CSV files in a file system (``file://`` or ``s3://``, as the archive)::

    label_sources:
      - name: repayments
        model: credit
        interval: 10m
        sql:
          url: ${WAREHOUSE_URL}
          query: >
            SELECT loan_id, repaid, decided_at FROM repayments
            WHERE decided_at > :watermark ORDER BY decided_at
          watermark: decided_at
          start: "1970-01-01T00:00:00+00:00"
        columns: {request_id: loan_id, label: repaid, timestamp: decided_at}
      - name: chargebacks
        model: fraud
        files: {url: "s3://labels/fraud", glob: "*.parquet", endpoint: "http://minio:9000"}

A SQL source binds ``:watermark`` to the largest watermark taken so far (``start`` on
the first pull), so each row is read once; a file source takes each file once, by path
and size. The marks are kept in the store beside the labels they delivered, and a
label written twice (a pull repeated after a crash) is stored once, so each label is
delivered once across restarts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelwatch.archive import ArchiveSpec
from modelwatch.durations import Duration

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_INTERVAL_S",
    "FileLabelSource",
    "LabelColumns",
    "LabelSourceSpec",
    "SqlLabelSource",
]

DEFAULT_INTERVAL_S = 300
DEFAULT_BATCH_ROWS = 10_000


class SqlLabelSource(BaseModel):
    """Rows of a query; ``:watermark`` in the query is bound to the last value taken."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, description="SQLAlchemy URL; ${ENV} for credentials")
    query: str = Field(min_length=1, description="uses :watermark, ordered by the watermark")
    watermark: str = Field(min_length=1, description="the result column that only grows")
    start: Any = Field(0, description=":watermark on the first pull (a number or text)")

    @model_validator(mode="after")
    def _binds_watermark(self) -> SqlLabelSource:
        if ":watermark" not in self.query:
            raise ValueError("query: must use :watermark (e.g. WHERE updated_at > :watermark)")
        if not isinstance(self.start, str | int | float) or isinstance(self.start, bool):
            raise ValueError("start: a number or a text such as '1970-01-01T00:00:00+00:00'")
        return self


class FileLabelSource(ArchiveSpec):
    """Files matching ``glob`` under ``url``, each taken once."""

    glob: str = Field("*.parquet", min_length=1, description="e.g. '*.parquet', '*/*.csv'")


class LabelColumns(BaseModel):
    """Which source column holds each label field."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field("request_id", min_length=1)
    label: str = Field("label", min_length=1)
    timestamp: str | None = Field(
        "timestamp", description="when the truth was known; none: the time it is read"
    )


class LabelSourceSpec(BaseModel):
    """One ``label_sources:`` entry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1)
    interval: Duration = Field(DEFAULT_INTERVAL_S, ge=1, description="between pulls")
    sql: SqlLabelSource | None = None
    files: FileLabelSource | None = None
    columns: LabelColumns = Field(default_factory=lambda: LabelColumns.model_validate({}))
    batch_rows: int = Field(DEFAULT_BATCH_ROWS, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one_kind(self) -> LabelSourceSpec:
        if (self.sql is None) == (self.files is None):
            raise ValueError("a label source has exactly one of sql: or files:")
        return self
