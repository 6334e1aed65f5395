"""CSV and Parquet files: batched reading and mapping columns onto a model's schema.

Column names in files: ``request_id``, ``timestamp``, one column per feature,
the prediction and target columns named in the schema, ``score`` (binary) or
``score_<class>`` (multiclass), and one column per segment key. Usage files
carry ``timestamp`` and the usage fields.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from modelwatch.collectors import usage_sample_id
from modelwatch.domain import FeatureType, normalize_class
from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.storable import NUL, NUL_MESSAGE
from modelwatch.store.layout import ColumnKind, ModelLayout
from modelwatch.store.registry import ModelRecord

__all__ = [
    "detect_format",
    "event_payloads",
    "iter_batches",
    "label_payloads",
    "parse_reference",
    "reference_frame",
    "usage_payloads",
]

PARQUET_MAGIC = b"PAR1"


def detect_format(head: bytes, hint: str | None = None) -> str:
    """``parquet`` or ``csv``: from the magic bytes, else from a file suffix or content type."""
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    hint = (hint or "").lower()
    if "parquet" in hint:
        raise ValidationFailed(
            [FieldError(("body",), "declared Parquet but is not a Parquet file")]
        )
    return "csv"


def iter_batches(path: Path, batch_size: int) -> Iterator[pl.DataFrame]:
    """Stream a file in frames of at most ``batch_size`` rows."""
    with path.open("rb") as fh:
        fmt = detect_format(fh.read(4), path.suffix)
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield frame
        return
    lazy = pl.scan_csv(path, infer_schema_length=10_000)
    for chunk in lazy.collect_batches(chunk_size=batch_size):
        for start in range(0, chunk.height, batch_size):
            yield chunk.slice(start, batch_size)


def count_rows(path: Path) -> int | None:
    """Rows in the file when that is cheap to know (Parquet metadata), else None."""
    with path.open("rb") as fh:
        if fh.read(4) != PARQUET_MAGIC:
            return None
    return int(pq.ParquetFile(path).metadata.num_rows)


def read_bytes(data: bytes, fmt: str) -> pl.DataFrame:
    try:
        if fmt == "parquet":
            return pl.read_parquet(io.BytesIO(data))
        return pl.read_csv(io.BytesIO(data), infer_schema_length=10_000)
    except Exception as exc:  # polars raises many kinds for a malformed file
        raise ValidationFailed([FieldError(("body",), f"cannot read {fmt}: {exc}")]) from None


def _timestamps(frame: pl.DataFrame) -> pl.DataFrame:
    """Datetime columns become Unix seconds, which the validators accept."""
    if "timestamp" in frame.columns and frame.schema["timestamp"] in (pl.Datetime, pl.Date):
        col = pl.col("timestamp")
        if frame.schema["timestamp"] == pl.Date:
            col = col.cast(pl.Datetime("us"))
        frame = frame.with_columns(
            (col.dt.replace_time_zone(None).dt.epoch("us") / 1_000_000).alias("timestamp")
        )
    return frame


def _check_columns(frame: pl.DataFrame, required: list[str], allowed: set[str]) -> None:
    errors = [
        FieldError((c,), "required column is missing") for c in required if c not in frame.columns
    ]
    errors += [
        FieldError((c,), f"unexpected column (known: {sorted(allowed)})")
        for c in frame.columns
        if c not in allowed
    ]
    if errors:
        raise ValidationFailed(errors)


def _score_columns(layout: ModelLayout) -> list[str]:
    return [c.source for c in layout.scores]


def event_payloads(layout: ModelLayout, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame of predictions as the events of an ingest request."""
    spec = layout.spec
    features = [f.name for f in spec.features]
    scores = _score_columns(layout)
    allowed = {"request_id", "timestamp", spec.prediction, *features, *scores, *spec.segments}
    _check_columns(frame, ["request_id", "timestamp", spec.prediction], allowed)
    frame = _timestamps(frame)
    present = set(frame.columns)
    events = []
    for row in frame.iter_rows(named=True):
        event: dict[str, Any] = {
            "request_id": row["request_id"],
            "timestamp": row["timestamp"],
            "prediction": row[spec.prediction],
            "features": {f: row[f] for f in features if f in present},
        }
        if len(scores) == 1 and "score" in present:
            event["score"] = row["score"]
        elif len(scores) > 1 and present.intersection(scores):
            event["scores"] = {c.removeprefix("score_"): row[c] for c in scores if c in present}
        if spec.segments:
            event["segment"] = {k: row[k] for k in spec.segments if k in present}
        events.append(event)
    return events


def label_payloads(layout: ModelLayout, frame: pl.DataFrame) -> list[dict[str, Any]]:
    target = layout.spec.target
    label_col = target if target in frame.columns else "label"
    _check_columns(frame, ["request_id", label_col], {"request_id", "timestamp", label_col})
    frame = _timestamps(frame).rename({label_col: "label"})
    return list(frame.to_dicts())


def usage_payloads(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Samples as the API takes them. A row without a ``sample_id`` gets one derived from
    its content, so importing a file twice stores its samples once (rows identical in
    every column are one sample)."""
    if "timestamp" not in frame.columns:
        raise ValidationFailed([FieldError(("timestamp",), "required column is missing")])
    samples = _timestamps(frame).to_dicts()
    for sample in samples:
        if sample.get("sample_id") is None:
            sample["sample_id"] = _content_id(sample)
    return samples


def _content_id(sample: dict[str, Any]) -> str:
    content = {k: v for k, v in sample.items() if k != "sample_id"}
    return usage_sample_id("file", json.dumps(content, sort_keys=True, default=str), length=40)


def reference_frame(layout: ModelLayout, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Coerce an uploaded reference to the storage columns; also returns ignored columns.

    Features are required; prediction, scores and target are optional (absent
    ones are stored as nulls).
    """
    spec = layout.spec
    features = {f.name: f.type for f in spec.features}
    missing = [
        FieldError((n,), "required column is missing") for n in features if n not in frame.columns
    ]
    if missing:
        raise ValidationFailed(missing)
    if frame.height == 0:
        raise ValidationFailed([FieldError(("body",), "the reference has no rows")])
    errors: list[FieldError] = []
    out: list[pl.Series] = []
    for col in layout.reference_value_columns:
        name = col.source
        if name not in frame.columns:
            out.append(pl.Series(col.name, [None] * frame.height, dtype=_dtype(col.kind)))
            continue
        series = frame[name]
        try:
            if name in features:
                coerced = _coerce_feature(series, features[name])
            elif col.name in ("prediction", "target") and spec.is_classification:
                coerced = _coerce_classes(series, spec.class_list)
            else:
                coerced = series.cast(pl.Float64, strict=True)
                _check_range(coerced, col.name != "prediction" and col.name != "target")
            _check_text(coerced)
        except (ValueError, pl.exceptions.PolarsError) as exc:
            errors.append(FieldError((name,), str(exc).splitlines()[0]))
            continue
        out.append(coerced.alias(col.name))
    if errors:
        raise ValidationFailed(errors)
    known = {c.source for c in layout.reference_value_columns}
    ignored = [c for c in frame.columns if c not in known]
    return pl.DataFrame(out), ignored


def parse_reference(
    model: ModelRecord, data: bytes, hint: str | None = None
) -> tuple[pl.DataFrame, str, list[str]]:
    """Raw CSV/Parquet bytes to a validated frame in the model's reference layout;
    also returns the format (``csv`` or ``parquet``) and the ignored columns."""
    fmt = detect_format(data[:4], hint)
    coerced, ignored = reference_frame(model.layout, read_bytes(data, fmt))
    return coerced, fmt, ignored


def _dtype(kind: ColumnKind) -> type[pl.DataType]:
    return {ColumnKind.FLOAT: pl.Float64, ColumnKind.TEXT: pl.String, ColumnKind.BOOL: pl.Boolean}[
        kind
    ]


def _coerce_feature(series: pl.Series, ftype: FeatureType) -> pl.Series:
    if ftype is FeatureType.NUMERIC:
        out = series.cast(pl.Float64, strict=True)
        _check_range(out, probability=False)
        return out
    if ftype is FeatureType.BOOLEAN:
        if series.dtype == pl.Boolean:
            return series
        if series.dtype.is_integer() and series.drop_nulls().is_in([0, 1]).all():
            return series.cast(pl.Boolean)
        if series.dtype == pl.String:
            lowered = series.str.to_lowercase()
            if lowered.drop_nulls().is_in(["true", "false"]).all():
                return lowered == "true"
        raise ValueError("must hold true/false (or 0/1) values")
    if series.dtype.is_float():
        raise ValueError("must hold strings or integers, not floats")
    return series.cast(pl.String)


def _coerce_classes(series: pl.Series, classes: list[str]) -> pl.Series:
    mapping = {v: normalize_class(v) for v in series.unique().drop_nulls().to_list()}
    bad = [v for v, norm in mapping.items() if norm is None or norm not in classes]
    if bad:
        raise ValueError(f"values {bad[:5]} are not among the model's classes {classes}")
    return series.replace_strict(mapping, return_dtype=pl.String, default=None)


def _check_text(series: pl.Series) -> None:
    """Text must be storable alike on both stores: no NUL character (row numbers from 1)."""
    if series.dtype != pl.String:
        return
    hits = series.str.contains(NUL, literal=True).fill_null(False)
    if hits.any():
        raise ValueError(f"row {int(hits.arg_true()[0]) + 1}: {NUL_MESSAGE}")


def _check_range(series: pl.Series, probability: bool) -> None:
    values = series.drop_nulls()
    if values.is_nan().any() or values.is_infinite().any():
        raise ValueError("holds NaN or infinite values")
    if probability and ((values < 0) | (values > 1)).any():
        raise ValueError("must hold probabilities between 0 and 1")
