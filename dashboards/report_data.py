"""What a drill-down report shows: a run's window and its baseline, read from the store.

:func:`find_target` is cheap (a few indexed queries) and runs on the request
path: it resolves the run, its model, version and baseline (the monitor's
``baseline``, as the runner chooses it) and the window's *observed* data
state, the cache key. Late events or labels change that state, so the report
of a window that was re-evaluated is generated afresh. :func:`load_frames`
reads and samples the frames; it runs in the report generator's threads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from modelwatch.domain import Alias
from modelwatch.errors import NotFoundError
from modelwatch.monitors import Baseline
from modelwatch.store.engine import Store
from modelwatch.store.frames import frame_columns, read_events, read_reference
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.store.runs import RunRecord, RunStore, window_states

__all__ = ["ReportFrames", "ReportTarget", "find_target", "load_frames"]

REPORT_FORMAT = "1"  # part of every cache key: change it when the reports' content changes


@dataclass(frozen=True)
class ReportTarget:
    """A run with everything needed to read its window and baseline, and the cache key."""

    run: RunRecord
    model: ModelRecord
    version: VersionRecord
    champion: VersionRecord | None  # the baseline when the monitor compares with the champion
    reference_id: int | None  # else the reference dataset compared with
    reference_version: str | None
    state_key: str

    @property
    def baseline_text(self) -> str:
        if self.champion is not None:
            return f"the champion (version {self.champion.version}) over the same window"
        if self.reference_id is not None:
            return f"the reference data of version {self.reference_version}"
        return "none (the version has no reference data and no other champion)"


@dataclass(frozen=True)
class ReportFrames:
    """Sampled frames (columns as :func:`frame_columns` names them; the target is ``label``)."""

    window: pl.DataFrame
    baseline: pl.DataFrame | None
    window_rows: int  # before sampling
    baseline_rows: int
    labelled: pl.DataFrame  # the window's labelled rows (sampled separately)
    labelled_rows: int


def find_target(store: Store, registry: Registry, run_id: int) -> ReportTarget:
    run = RunStore(store).get(run_id)
    monitor = MonitorStore(store, registry).get(run.monitor_id)
    model = registry.get_model(monitor.spec.model)
    versions = registry.list_versions(model)
    version = next((v for v in versions if v.id == run.version_id), None)
    if version is None:
        raise NotFoundError(f"run {run_id} belongs to a version that no longer exists")
    champion = next((v for v in versions if v.alias == Alias.CHAMPION.value), None)
    # The report's file is named by the run id, so the run's own (planned) data state
    # would add nothing to the key: only what the window holds now does.
    parts = [REPORT_FORMAT, _window_state(store, model, version.id, run)]
    if monitor.spec.baseline is Baseline.CHAMPION and champion and champion.id != version.id:
        parts.append(f"champion{champion.id}:{_window_state(store, model, champion.id, run)}")
        state = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        return ReportTarget(run, model, version, champion, None, None, state)
    references = ReferenceStore(store).latest_by_version(model)
    ref_version = version if version.id in references else champion
    ref = references.get(ref_version.id) if ref_version else None
    reference_id = int(ref["dataset_id"]) if ref else None
    parts.append(f"reference{reference_id}")
    state = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    ref_name = ref_version.version if ref and ref_version else None
    return ReportTarget(run, model, version, None, reference_id, ref_name, state)


def _window_state(store: Store, model: ModelRecord, version_id: int, run: RunRecord) -> str:
    """Events and joined labels of the window: how many, and when the latest arrived."""
    start, end = run.window_start_us, run.window_end_us
    # One window, labels included; summed in case the window is not aligned to its length.
    states = window_states(store, model, version_id, end - start, start, end, start).values()
    n_events = sum(s.n_events for s in states)
    events_at = max((s.events_received for s in states), default=0)
    n_labels = sum(s.n_labels for s in states)
    labels_at = max((s.labels_received for s in states), default=0)
    return f"e{n_events}.{events_at}.l{n_labels}.{labels_at}"


def load_frames(store: Store, target: ReportTarget, max_rows: int) -> ReportFrames:
    """The window and baseline, each sampled to at most ``max_rows`` rows (seeded by the run
    id, so the same data always gives the same report)."""
    run, model = target.run, target.model
    window = _window(store, model, target.version.id, run)
    baseline: pl.DataFrame | None = None
    if target.champion is not None:
        baseline = _window(store, model, target.champion.id, run)
    elif target.reference_id is not None:
        baseline = _reference(store, model, target.reference_id)
    labelled = window.filter(pl.col("label").is_not_null())
    return ReportFrames(
        window=_sample(window, max_rows, run.id),
        baseline=_sample(baseline, max_rows, run.id) if baseline is not None else None,
        window_rows=window.height,
        baseline_rows=baseline.height if baseline is not None else 0,
        labelled=_sample(labelled, max_rows, run.id),
        labelled_rows=labelled.height,
    )


def _window(store: Store, model: ModelRecord, version_id: int, run: RunRecord) -> pl.DataFrame:
    start, end = run.window_start_us, run.window_end_us
    return read_events(store, model, [version_id], start, end, with_labels=True)


def _sample(frame: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    if frame.height <= max_rows:
        return frame
    # Seeds are 64-bit unsigned in polars; run ids are positive.
    return frame.sample(n=max_rows, seed=seed % 2**63)


def _reference(store: Store, model: ModelRecord, dataset_id: int) -> pl.DataFrame:
    """The reference rows, the target named ``label`` as in windows (``label`` is reserved,
    so no other column has that name)."""
    frame = read_reference(store, model, dataset_id)
    target = frame_columns(model.layout).target
    if target in frame.columns and "label" not in frame.columns:
        return frame.rename({target: "label"})
    return frame
