"""``modelwatch import``: stream a Parquet or CSV file through the ingest path in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from collector import files
from collector.ingest import Ingestor, IngestResult
from modelwatch.errors import FieldError, ValidationFailed
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry

__all__ = ["Progress", "import_file"]

KINDS = ("predictions", "labels", "usage")


class Progress(Protocol):
    length: int | None

    def update(self, n_steps: int) -> None: ...


def _count(path: Path) -> int:
    known = files.count_rows(path)
    if known is not None:
        return known
    lines = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 1)


def import_file(
    store: Store,
    kind: str,
    path: Path,
    model_name: str,
    version: str | None,
    batch_size: int,
    progress: Progress | None = None,
) -> IngestResult:
    """Import ``path``; each batch is validated and committed whole, so a failure leaves
    earlier batches stored and the error names the row and column. Re-running is safe:
    stored rows are counted as duplicates."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    registry = Registry(store)
    ingestor = Ingestor(store, registry, max_batch=batch_size)
    model = registry.get_model(model_name)
    if progress is not None:
        progress.length = _count(path)
    totals = [0, 0, 0, 0]
    offset = 0
    for frame in files.iter_batches(path, batch_size):
        payload: dict[str, Any] = {"model": model_name}
        if version is not None:
            payload["version"] = version
        try:
            if kind == "predictions":
                payload["events"] = files.event_payloads(model.layout, frame)
                result = ingestor.predictions(payload)
            elif kind == "labels":
                payload["labels"] = files.label_payloads(model.layout, frame)
                result = ingestor.labels(payload)
            else:
                payload["samples"] = files.usage_payloads(frame)
                result = ingestor.usage(payload)
        except ValidationFailed as exc:
            raise ValidationFailed([_as_row(e, offset) for e in exc.errors]) from None
        for i, n in enumerate(
            (result.received, result.accepted, result.duplicates, result.updated)
        ):
            totals[i] += n
        offset += frame.height
        if progress is not None:
            progress.update(frame.height)
    return IngestResult(*totals)


def _as_row(error: FieldError, offset: int) -> FieldError:
    """Turn ``events[3].features.age`` into ``row 5003, column age``."""
    loc = error.loc
    if len(loc) >= 2 and isinstance(loc[1], int):
        column = str(loc[-1]) if len(loc) > 2 else ""
        return FieldError(("row", offset + loc[1] + 1, column), error.msg, error.input)
    return error
