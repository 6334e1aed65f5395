"""The runner: claims a run, loads its window and baseline, runs the checks, stores results.

Metrics are pure; the runner is the only part that reads the store (through
:mod:`modelwatch.store.frames`) and it writes results through the run store.
A failing metric becomes an ``error`` result; a failing run is recorded and
retried; nothing here raises into the scheduler.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from sqlalchemy import func, select, text

from evaluators.base import EvalContext, Family, Metric, get_metric
from evaluators.checks import resolve_checks
from evaluators.sequential_keys import CHAMPION_OPTION, PRIOR_OPTION
from evaluators.sequential_keys import KEY as SEQUENTIAL_KEY
from evaluators.windows import US
from modelwatch.domain import Alias
from modelwatch.monitors import Baseline, CheckSpec
from modelwatch.results import MetricResult, Status
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.frames import fetch, frame_columns, read_events, read_reference
from modelwatch.store.monitors import MonitorRecord, MonitorStore
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.store.runs import RunRecord, RunStore
from modelwatch.telemetry import RUN_DURATION
from modelwatch.timeutil import us_to_datetime

__all__ = ["Runner"]

log = logging.getLogger(__name__)
VOLUME_HISTORY = 24  # windows averaged for the expected volume
REFERENCE_CACHE = 16  # reference frames kept in memory
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class _Inputs:
    run: RunRecord
    monitor: MonitorRecord
    model: ModelRecord
    version: VersionRecord
    window: pl.DataFrame
    baseline: pl.DataFrame | None
    usage: pl.DataFrame
    champion: VersionRecord | None
    expected_volume: float | None
    rejected_events: int
    champion_frames: list[pl.DataFrame] = field(default_factory=list)


class Runner:
    def __init__(self, store: Store, registry: Registry, worker: str) -> None:
        self.store = store
        self.registry = registry
        self.worker = worker
        self.monitors = MonitorStore(store, registry)
        self.runs = RunStore(store)
        self.references = ReferenceStore(store)
        self._references: dict[tuple[int, int], pl.DataFrame] = {}

    def run_next(self, monitor_ids: list[int] | None = None) -> RunRecord | None:
        """Claim and evaluate one run; None when nothing is pending."""
        run = self.runs.claim(self.worker, monitor_ids)
        if run is None:
            return None
        with _tracer.start_as_current_span(
            "evaluation run", attributes=_run_attributes(run)
        ) as span:
            started = time.perf_counter()
            try:
                results = self.evaluate(run)
            except Exception as exc:  # a broken run must not stop the worker
                log.exception("evaluation run %s failed", run.id)
                span.record_exception(exc)
                _end_run(span, "failed", time.perf_counter() - started)
                self.runs.fail(run, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
                return run
            if not self.runs.finish(run, results, (time.perf_counter() - started) * 1000):
                log.warning(
                    "evaluation run %s was taken over after its lease; its results are dropped",
                    run.id,
                )
            _end_run(span, "done", time.perf_counter() - started)
        return run

    def evaluate(self, run: RunRecord) -> list[tuple[str, MetricResult]]:
        inputs = self._load(run)
        spec = inputs.model.spec
        base = inputs.baseline
        targets = base is not None and "label" in base.columns and base["label"].is_not_null().any()
        checks = resolve_checks(inputs.monitor.spec, spec.task, spec.scores, targets)
        if not run.segment_key:
            return [("", r) for r in self._compute(inputs, checks, inputs.window, None, "")]
        column = self._segment_column(inputs.model, run.segment_key)
        out: list[tuple[str, MetricResult]] = []
        for (value,), part in inputs.window.group_by(column, maintain_order=True):
            segment = f"{run.segment_key}={'' if value is None else value}"
            only = pl.col(column).is_null() if value is None else pl.col(column) == value
            out += [(segment, r) for r in self._compute(inputs, checks, part, only, segment)]
        return out

    # --- loading -------------------------------------------------------------
    def _load(self, run: RunRecord) -> _Inputs:
        monitor = self.monitors.get(run.monitor_id)
        model = self.registry.get_model(monitor.spec.model)
        versions = self.registry.list_versions(model)
        version = next(v for v in versions if v.id == run.version_id)
        champion = next((v for v in versions if v.alias == Alias.CHAMPION.value), None)
        window = self._window(model, version.id, run)
        baseline = self._baseline(monitor, model, version, champion, run)
        usage = self._usage(version.id, run)
        expected = self._expected_volume(model, version.id, run, monitor.spec.window)
        rejected = self._rejected(version.id, run)
        trace.get_current_span().set_attributes(
            {
                "modelwatch.monitor": monitor.name,
                "modelwatch.model": model.name,
                "modelwatch.version": version.version,
            }
        )
        return _Inputs(
            run, monitor, model, version, window, baseline, usage, champion, expected, rejected
        )

    def _window(self, model: ModelRecord, version_id: int, run: RunRecord) -> pl.DataFrame:
        frame = read_events(
            self.store,
            model,
            [version_id],
            run.window_start_us,
            run.window_end_us,
            with_labels=True,
        )
        return _conform(model, frame)

    def _baseline(
        self,
        monitor: MonitorRecord,
        model: ModelRecord,
        version: VersionRecord,
        champion: VersionRecord | None,
        run: RunRecord,
    ) -> pl.DataFrame | None:
        if champion is not None and _champion_is_baseline(monitor, version, champion):
            return self._window(model, champion.id, run)
        references = self.references.latest_by_version(model)
        ref = references.get(version.id) or (references.get(champion.id) if champion else None)
        if ref is None:
            return None
        return self._reference(model, int(ref["dataset_id"]))

    def _reference(self, model: ModelRecord, dataset_id: int) -> pl.DataFrame:
        """Reference datasets never change once stored, so the same frame (and the drift
        profiles cached on it) serves every window."""
        key = (model.id, dataset_id)
        frame = self._references.get(key)
        if frame is None:
            frame = _conform(model, read_reference(self.store, model, dataset_id))
            if len(self._references) >= REFERENCE_CACHE:
                self._references.pop(next(iter(self._references)))
            self._references[key] = frame
        return frame

    def _usage(self, version_id: int, run: RunRecord) -> pl.DataFrame:
        sql = (
            "SELECT ts_us, latency_ms, cpu_seconds, memory_mb, gpu_seconds, cost "
            f"FROM usage_samples WHERE version_id = {int(version_id)} "
            f"AND ts_us >= {int(run.window_start_us)} "
            f"AND ts_us < {int(run.window_end_us)}"
        )
        frame = fetch(self.store, sql)
        cols = ["latency_ms", "cpu_seconds", "memory_mb", "gpu_seconds", "cost"]
        return frame.select(
            pl.col("ts_us").cast(pl.Int64).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
            *(pl.col(c).cast(pl.Float64) for c in cols),
        )

    def _segment_column(self, model: ModelRecord, key: str) -> str:
        for frame_name in frame_columns(model.layout).segments:
            if frame_name in (key, f"segment:{key}"):
                return frame_name
        raise KeyError(f"model {model.name!r} has no segment key {key!r}")

    # --- computing -----------------------------------------------------------
    def _compute(
        self,
        inputs: _Inputs,
        checks: list[CheckSpec],
        window: pl.DataFrame,
        segment: pl.Expr | None,
        segment_name: str,
    ) -> list[MetricResult]:
        out: list[MetricResult] = []
        memo: dict[Hashable, Any] = {}
        for check in checks:
            metric = get_metric(check.metric)
            if inputs.model.spec.task not in metric.tasks:
                continue
            ctx = self._context(inputs, metric, check, window, segment, memo, segment_name)
            if ctx is None:
                continue
            out += _safe_compute(metric, ctx)
        return out

    def _context(
        self,
        inputs: _Inputs,
        metric: Metric,
        check: CheckSpec,
        window: pl.DataFrame,
        segment: pl.Expr | None,
        memo: dict[Hashable, Any],
        segment_name: str = "",
    ) -> EvalContext | None:
        spec = inputs.monitor.spec
        options: dict[str, Any] = {
            "window_hours": spec.window / 3600,
            "prices": spec.prices.model_dump(),
            "expected_volume": inputs.expected_volume if segment is None else None,
            "rejected_events": inputs.rejected_events if segment is None else 0,
            **check.options,
        }
        ctx_window, challenger, usage = window, None, inputs.usage
        if metric.family is Family.COMPARISON:
            champion = inputs.champion
            if champion is None or champion.id == inputs.version.id:
                return None  # only challengers and shadows are compared with the champion
            ctx_window, usage = self._champion(inputs, champion)
            if segment is not None:
                ctx_window = ctx_window.filter(segment)
            challenger = window
            options.setdefault("challenger_usage", inputs.usage)
            if metric.key == SEQUENTIAL_KEY:
                options[CHAMPION_OPTION] = champion.version
                options[PRIOR_OPTION] = self._prior_sequential(inputs, segment_name)
        return EvalContext(
            spec=inputs.model.spec,
            window=ctx_window,
            baseline=inputs.baseline,
            usage=usage,
            challenger=challenger,
            options=options,
            min_samples=spec.min_samples,
            memo=memo,
        )

    def _champion(
        self, inputs: _Inputs, champion: VersionRecord
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The champion's window and usage, read once per run however many checks need them
        (the window is the baseline already when the monitor's baseline is the champion)."""
        cached = inputs.champion_frames
        if not cached:
            if inputs.baseline is not None and _champion_is_baseline(
                inputs.monitor, inputs.version, champion
            ):
                cached.append(inputs.baseline)
            else:
                cached.append(self._window(inputs.model, champion.id, inputs.run))
            cached.append(self._usage(champion.id, inputs.run))
        return cached[0], cached[1]

    def _prior_sequential(self, inputs: _Inputs, segment: str) -> list[tuple[int, str, str]]:
        """The sequential comparison's earlier windows (their current results), which the
        metric sums: (window start, figure, detail)."""
        m = t.metric_results
        query = (
            select(m.c.window_start_us, m.c.label, m.c.detail)
            .where(
                m.c.version_id == inputs.run.version_id,
                m.c.metric == SEQUENTIAL_KEY,
                m.c.window_start_us < inputs.run.window_start_us,
                m.c.monitor_id == inputs.run.monitor_id,
                m.c.current == 1,
                m.c.segment == segment,
            )
            .order_by(m.c.window_start_us)
        )
        with self.store.read() as conn:
            return [(int(a), str(b), str(c)) for a, b, c in conn.execute(query)]

    def _expected_volume(
        self, model: ModelRecord, version_id: int, run: RunRecord, window_s: int
    ) -> float | None:
        """Mean events per full window over the previous windows that had traffic.

        The windows holding the version's first and last event are left out: traffic
        that began or stopped inside them fills them only in part, and a partial
        window would lower what a full one is expected to hold."""
        window_us = window_s * US
        start = run.window_start_us - VOLUME_HISTORY * window_us
        events = model.layout.events.name
        per_window = text(
            f'SELECT ts_us / :w, COUNT(*) FROM "{events}" '
            "WHERE version_id = :v AND ts_us >= :a AND ts_us < :b GROUP BY ts_us / :w"
        )
        bounds = text(f'SELECT MIN(ts_us), MAX(ts_us) FROM "{events}" WHERE version_id = :v')
        params = {"w": window_us, "v": version_id, "a": start, "b": run.window_start_us}
        with self.store.read() as conn:
            counts = conn.execute(per_window, params).all()
            first, last = conn.execute(bounds, {"v": version_id}).one()
        partial = set() if first is None else {first // window_us, last // window_us}
        full = [int(n) for k, n in counts if int(k) not in partial]
        return sum(full) / len(full) if full else None

    def _rejected(self, version_id: int, run: RunRecord) -> int:
        """Events the collector refused for this version while the window was open."""
        r = t.ingest_rejections
        query = select(func.coalesce(func.sum(r.c["items"]), 0)).where(
            r.c.version_id == version_id,
            r.c.kind == "predictions",
            r.c.received_us >= run.window_start_us,
            r.c.received_us < run.window_end_us,
        )
        with self.store.read() as conn:
            return int(conn.execute(query).scalar_one())


def _run_attributes(run: RunRecord) -> dict[str, str | int]:
    start, end = us_to_datetime(run.window_start_us), us_to_datetime(run.window_end_us)
    return {
        "modelwatch.run.id": run.id,
        "modelwatch.monitor.id": run.monitor_id,
        "modelwatch.version.id": run.version_id,
        "modelwatch.window.start": start.isoformat() if start else "",
        "modelwatch.window.end": end.isoformat() if end else "",
        "modelwatch.run.segment_key": run.segment_key,
    }


def _end_run(span: Span, status: str, seconds: float) -> None:
    span.set_attribute("modelwatch.run.status", status)
    if status != "done":
        span.set_status(StatusCode.ERROR)
    RUN_DURATION.record(seconds, {"modelwatch.run.status": status})


def _champion_is_baseline(
    monitor: MonitorRecord, version: VersionRecord, champion: VersionRecord
) -> bool:
    """Whether the run's baseline is the champion's window (and not the version's own)."""
    return monitor.spec.baseline is Baseline.CHAMPION and champion.id != version.id


def _safe_compute(metric: Metric, ctx: EvalContext) -> list[MetricResult]:
    try:
        return metric.compute(ctx)
    except Exception as exc:  # a metric bug must not lose the other results
        log.exception("metric %s failed", metric.key)
        detail = f"{type(exc).__name__}: {exc}"
        return [metric.status_only(Status.ERROR, ctx.window.height, detail)]


def _conform(model: ModelRecord, frame: pl.DataFrame) -> pl.DataFrame:
    """Name the prediction ``prediction`` and the target ``label``, as metrics expect."""
    names = frame_columns(model.layout)
    renames = {}
    if names.prediction != "prediction" and names.prediction in frame.columns:
        renames[names.prediction] = "prediction"
    if names.target in frame.columns and "label" not in frame.columns:
        renames[names.target] = "label"
    return frame.rename(renames) if renames else frame
