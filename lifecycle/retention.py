"""Retention: raw data leaves the hot store once its windows are final and its time is up.

For each model the cut-off is ``now - raw - (longest window + label delay of its
monitors)``, aligned down to a UTC day: a window that can still change (open, or
still taking labels) is never touched. Prediction events, labels, usage samples
and rejected-batch records older than that are deleted in batches of
``batch_rows``, each its own short transaction, so ingest never waits long on a
lock. Results and runs go only when ``results`` is set, and never inside the
monitors' backfill horizon (the planner would plan those windows again).

Labels go by their own time: a label is observed after the prediction it
belongs to, so a label older than the cut-off belongs to an event that is older
still.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, select

from lifecycle.archive import ParquetArchive
from lifecycle.archiving import archive_then_delete
from modelwatch.retention import RetentionSpec
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.registry import ModelRecord, Registry
from modelwatch.store.retention import RetentionSettings

__all__ = ["KINDS", "ModelCutoffs", "Progress", "Retention", "RetentionReport"]

log = logging.getLogger(__name__)

US = 1_000_000
DAY_US = 86_400 * US
KINDS = ("events", "labels", "usage", "rejections", "results")
RESULTS_PER_RUN = 50  # about how many result rows one run holds: sizes a batch of runs

Progress = Callable[[str, str, int], None]
"""Called after each batch with the model, the kind of row and the rows deleted so far."""


@dataclass(frozen=True)
class ModelCutoffs:
    """What retention removes for one model: rows with a time before each cut-off."""

    model: ModelRecord
    raw_s: int
    results_s: int | None
    source: str  # default, config or api
    raw_before_us: int
    results_before_us: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "raw_s": self.raw_s,
            "results_s": self.results_s,
            "source": self.source,
            "raw_before_us": self.raw_before_us,
            "results_before_us": self.results_before_us,
        }


@dataclass
class RetentionReport:
    """Per model: the cut-offs and, per kind, the rows deleted (or, dry, that would be)."""

    cutoffs: ModelCutoffs
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Target:
    """One kind of row of one model: its table, key and the rows past the cut-off."""

    kind: str
    table: Table
    key: str
    where: Sequence[ColumnElement[bool]]


class Retention:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        spec: RetentionSpec,
        *,
        clock: Callable[[], float] = time.time,
        archive: ParquetArchive | None = None,
    ) -> None:
        self.store = store
        self.archive = archive
        self.registry = registry
        self.monitors = MonitorStore(store, registry)
        self.settings = RetentionSettings(store)
        self.spec = spec
        self.clock = clock

    def cutoffs(self, model: ModelRecord) -> ModelCutoffs:
        raw_s, results_s, source = self._retention_of(model)
        monitors = [m.spec for m in self.monitors.list(model_id=model.id)]
        settle_s = max((m.window + m.label_delay for m in monitors), default=0)
        horizon_s = max((m.backfill + m.window for m in monitors), default=0)
        now_us = int(self.clock() * US)
        raw_before = _day_floor(now_us - (raw_s + settle_s) * US)
        results_before = None
        if results_s is not None:
            results_before = _day_floor(now_us - max(results_s, horizon_s, settle_s) * US)
        return ModelCutoffs(model, raw_s, results_s, source, raw_before, results_before)

    def _retention_of(self, model: ModelRecord) -> tuple[int, int | None, str]:
        """The model's retention and who set it: the config, the API or the defaults."""
        declared = self.spec.models.get(model.name)
        source = "config"
        raw_s, results_s = (None, None) if declared is None else (declared.raw, declared.results)
        if declared is None:
            own = self.settings.get(model.id)
            source = "default" if own is None else own.source
            raw_s, results_s = (None, None) if own is None else (own.raw_s, own.results_s)
        raw = self.spec.raw if raw_s is None else raw_s
        return raw, self.spec.results if results_s is None else results_s, source

    def declared_in_config(self, model: str) -> bool:
        return model in self.spec.models

    def plan(self, model: str | None = None) -> list[ModelCutoffs]:
        models = [self.registry.get_model(model)] if model else self.registry.list_models()
        return [self.cutoffs(m) for m in models]

    def run(
        self, model: str | None = None, *, dry_run: bool = False, progress: Progress | None = None
    ) -> list[RetentionReport]:
        """Apply (or, dry, count) retention for one model or all; one report per model."""
        reports = []
        for cutoffs in self.plan(model):
            started = time.monotonic()
            report = RetentionReport(cutoffs, dry_run)
            if self.archive is not None and not dry_run:
                outcome = archive_then_delete(
                    self.archive,
                    cutoffs.model,
                    cutoffs.raw_before_us,
                    self.spec.batch_rows,
                    progress,
                )
                report.cutoffs = cutoffs = replace(cutoffs, raw_before_us=outcome.before_us)
                report.rows |= outcome.rows
            archived = self.archive is not None and not dry_run
            for target in self._targets(cutoffs, archived):
                so_far = report.rows.get(target.kind, 0)
                if dry_run:
                    report.rows[target.kind] = so_far + self._count(target)
                else:
                    report.rows[target.kind] = self._delete(cutoffs, target, progress, so_far)
            report.seconds = time.monotonic() - started
            reports.append(report)
        return reports

    def run_quietly(self) -> None:
        """The scheduler's job: background work logs and never raises."""
        try:
            for report in self.run():
                deleted = sum(report.rows.values())
                if deleted:
                    log.info(
                        "retention: %s: deleted %s (%.1f s)",
                        report.cutoffs.model.name,
                        ", ".join(f"{n} {k}" for k, n in report.rows.items() if n),
                        report.seconds,
                    )
        except Exception:
            log.exception("retention: the run failed; it is tried again at the next interval")

    def _targets(self, cutoffs: ModelCutoffs, archived: bool) -> Iterator[_Target]:
        layout = cutoffs.model.layout
        before = cutoffs.raw_before_us
        versions = [v.id for v in self.registry.list_versions(cutoffs.model)]
        events, labels, usage = layout.events, layout.labels, t.usage_samples
        # With an archive, events and usage go only once archived (lifecycle.archiving);
        # without, per version, so the delete walks the (version_id, ts_us) index.
        hot_only = not archived
        for version_id in versions if hot_only else ():
            yield _Target(
                "events", events, "id", (events.c.version_id == version_id, events.c.ts_us < before)
            )
        yield _Target("labels", labels, "request_id", (labels.c.ts_us < before,))
        for version_id in versions if hot_only else ():
            yield _Target(
                "usage", usage, "id", (usage.c.version_id == version_id, usage.c.ts_us < before)
            )
        rejections = t.ingest_rejections
        yield _Target(
            "rejections",
            rejections,
            "id",
            (rejections.c.model_id == cutoffs.model.id, rejections.c.received_us < before),
        )
        if cutoffs.results_before_us is not None:
            runs = t.evaluation_runs
            monitor_ids = [m.id for m in self.monitors.list(model_id=cutoffs.model.id)]
            yield _Target(
                "results",
                runs,
                "id",
                (
                    runs.c.monitor_id.in_(monitor_ids),
                    runs.c.window_end_us < cutoffs.results_before_us,
                ),
            )

    def _count(self, target: _Target) -> int:
        with self.store.read() as conn:
            query = select(func.count()).select_from(target.table).where(*target.where)
            return int(conn.execute(query).scalar_one())

    def _delete(
        self, cutoffs: ModelCutoffs, target: _Target, progress: Progress | None, so_far: int
    ) -> int:
        """Delete the target's rows batch by batch; returns ``so_far`` plus the rows deleted."""
        batch = self.spec.batch_rows
        if target.kind == "results":
            batch = max(1, batch // RESULTS_PER_RUN)
        key = target.table.c[target.key]
        total = so_far
        while True:
            with self.store.write() as conn:
                ids = list(conn.execute(select(key).where(*target.where).limit(batch)).scalars())
                if not ids:
                    return total
                if target.kind == "results":
                    conn.execute(delete(t.metric_results).where(t.metric_results.c.run_id.in_(ids)))
                conn.execute(delete(target.table).where(key.in_(ids)))
            total += len(ids)
            if progress is not None:
                progress(cutoffs.model.name, target.kind, total)
            if len(ids) < batch:
                return total


def _day_floor(ts_us: int) -> int:
    return ts_us - ts_us % DAY_US
