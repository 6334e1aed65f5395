"""The drill-down report's HTML: evidently's data drift of a run's window against its
baseline and, where labels have arrived, classification or regression quality of the
labelled rows, under a short modelwatch summary that names the drifted columns.

Drift uses every (sampled) row of the window; quality only the labelled ones, so the
two are separate evidently runs rendered on one page. Text features are not compared
(evidently's text drift trains a classifier per column), nor are columns without values.
"""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from dashboards.report_data import ReportFrames, ReportTarget
from modelwatch.domain import FeatureType, Task
from modelwatch.store.frames import frame_columns
from modelwatch.timeutil import us_to_datetime

__all__ = ["DriftedColumn", "render_report"]

_DRIFT_TEST = "ValueDrift"
_BODY = re.compile(r'<body>(?=\s*<div id="root_)')
# evidently embeds the data as JSON in a <script> without escaping "</" or "<!--";
# a zero-width space keeps a stored value from ending that script early.
_SCRIPT_BREAK = r"<([/!])"


@dataclass(frozen=True)
class DriftedColumn:
    column: str
    method: str
    score: float


@dataclass(frozen=True)
class _Columns:
    numerical: list[str]
    categorical: list[str]
    skipped: list[str]

    @property
    def all(self) -> list[str]:
        return [*self.numerical, *self.categorical]


def render_report(target: ReportTarget, frames: ReportFrames) -> str:
    """A standalone HTML page (evidently's scripts inline)."""
    if frames.window_rows == 0:
        return _page(_summary(target, frames, None, [], ""))
    columns = _columns(target, frames)
    quality_error = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # evidently and pandas warn about dtypes freely
        sections, drifted = _drift(frames, columns)
        if frames.labelled_rows:
            try:
                sections.append(_quality(target, frames))
            except Exception as exc:  # e.g. one class only: the drift is still worth showing
                quality_error = f"{type(exc).__name__}: {exc}"
        body = _render_sections(sections)
    summary = _summary(target, frames, drifted, columns.skipped, quality_error)
    match = _BODY.search(body)
    if match is None:  # evidently changed its page; the summary still comes first
        return _page(summary) + body
    return body[: match.end()] + summary + body[match.end() :]


# --- evidently --------------------------------------------------------------------------


def _drift(
    frames: ReportFrames, columns: _Columns
) -> tuple[list[tuple[str, Any]], list[DriftedColumn] | None]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    definition = DataDefinition(
        numerical_columns=columns.numerical, categorical_columns=columns.categorical
    )
    current = Dataset.from_pandas(_pandas(frames.window, columns.all), data_definition=definition)
    if frames.baseline is None or frames.baseline.height == 0 or not columns.all:
        snapshot = Report([DataSummaryPreset(columns=columns.all or None)]).run(current, None)
        return [("Data summary (no baseline to compare with)", snapshot)], None
    reference = Dataset.from_pandas(
        _pandas(frames.baseline, columns.all), data_definition=definition
    )
    report = Report([DataDriftPreset(columns=columns.all)], include_tests=True)
    snapshot = report.run(current, reference)
    return [("Data drift", snapshot)], _drifted(snapshot.dict())


def _drifted(result: dict[str, Any]) -> list[DriftedColumn]:
    out = []
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        status = getattr(test.get("status"), "value", test.get("status"))
        if str(params.get("type", "")).endswith(_DRIFT_TEST) and status == "FAIL":
            score = _score(result, test["metric_config"].get("metric_id"))
            out.append(DriftedColumn(str(params["column"]), str(params.get("method")), score))
    return out


def _score(result: dict[str, Any], metric_id: object) -> float:
    for metric in result.get("metrics", []):
        if metric.get("id") == metric_id:
            value = metric.get("value")
            return float(value) if isinstance(value, int | float) else float("nan")
    return float("nan")


def _quality(target: ReportTarget, frames: ReportFrames) -> tuple[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    spec = target.model.spec
    names = frame_columns(target.model.layout)
    prediction = names.prediction
    reference = _labelled(frames.baseline, prediction)
    score = names.scores[0] if spec.task is Task.BINARY and names.scores else None
    if score is not None and not _complete(score, frames.labelled, reference):
        score = None
    cols = [prediction, "label", *([score] if score else [])]
    if spec.task is Task.REGRESSION:
        from evidently import Regression

        task: Any = Regression(target="label", prediction=prediction)
        definition = DataDefinition(numerical_columns=cols, regression=[task])
        preset: Any = RegressionPreset()
        title = "Regression quality (labelled rows)"
    else:
        definition = DataDefinition(
            numerical_columns=[score] if score else [],
            categorical_columns=[prediction, "label"],
            classification=[_classification(target, prediction, score)],
        )
        preset = ClassificationPreset()
        title = "Classification quality (labelled rows)"
    current = Dataset.from_pandas(_pandas(frames.labelled, cols), data_definition=definition)
    ref = None
    if reference is not None:
        ref = Dataset.from_pandas(_pandas(reference, cols), data_definition=definition)
    return title, Report([preset]).run(current, ref)


def _classification(target: ReportTarget, prediction: str, score: str | None) -> Any:
    from evidently import BinaryClassification, MulticlassClassification

    spec = target.model.spec
    if spec.task is Task.BINARY:
        return BinaryClassification(
            target="label",
            prediction_labels=prediction,
            prediction_probas=score,
            pos_label=_safe_text(spec.positive_class or "1"),
        )
    return MulticlassClassification(target="label", prediction_labels=prediction)


def _labelled(frame: pl.DataFrame | None, prediction: str) -> pl.DataFrame | None:
    """The baseline's rows with a label and a prediction, if it has any."""
    if frame is None or "label" not in frame.columns or prediction not in frame.columns:
        return None
    rows = frame.filter(pl.col("label").is_not_null() & pl.col(prediction).is_not_null())
    return rows if rows.height else None


def _complete(column: str, *frames: pl.DataFrame | None) -> bool:
    return all(f is None or (column in f.columns and f[column].null_count() == 0) for f in frames)


def _render_sections(sections: Sequence[tuple[str, Any]]) -> str:
    # evidently 0.7 renders one snapshot per page through public API; its own renderer
    # (the one Snapshot.get_html_str uses) puts several on one page.
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    widgets: list[Any] = []
    for title, snapshot in sections:
        widgets.append(group_widget(title=title, widgets=snapshot._widgets))
        widgets.extend(snapshot._tests_widgets)
    return str(render_widgets(widgets, as_iframe=False))


# --- data -------------------------------------------------------------------------------


def _columns(target: ReportTarget, frames: ReportFrames) -> _Columns:
    spec = target.model.spec
    names = frame_columns(target.model.layout)
    numerical: list[str] = []
    categorical: list[str] = []
    skipped: list[str] = []
    for feature, name in zip(spec.features, names.features, strict=True):
        if feature.type is FeatureType.TEXT:
            skipped.append(name)
        elif feature.type is FeatureType.NUMERIC:
            numerical.append(name)
        else:
            categorical.append(name)
    if spec.task is Task.REGRESSION:
        numerical.append(names.prediction)
    else:
        categorical.append(names.prediction)
    numerical += names.scores
    frames_used = [frames.window] + ([frames.baseline] if frames.baseline is not None else [])

    def usable(column: str) -> bool:
        has = all(column in f.columns and f[column].null_count() < f.height for f in frames_used)
        if not has:
            skipped.append(column)
        return has

    return _Columns(
        [c for c in numerical if usable(c)], [c for c in categorical if usable(c)], skipped
    )


def _pandas(frame: pl.DataFrame, columns: list[str]) -> Any:
    exprs = []
    for name in columns:
        dtype = frame.schema[name]
        col = pl.col(name)
        if dtype == pl.Boolean:
            col = col.cast(pl.String)
        if dtype in (pl.Boolean, pl.String):
            col = col.str.replace_all(_SCRIPT_BREAK, "<\u200b$1")
        exprs.append(col)
    return frame.select(exprs).to_pandas()


def _safe_text(value: str) -> str:
    return re.sub(_SCRIPT_BREAK, "<\u200b\\1", value)


# --- the summary ------------------------------------------------------------------------


def _summary(
    target: ReportTarget,
    frames: ReportFrames,
    drifted: list[DriftedColumn] | None,
    skipped: list[str],
    quality_error: str,
) -> str:
    run, e = target.run, html.escape
    start, end = us_to_datetime(run.window_start_us), us_to_datetime(run.window_end_us)
    baseline_shown = frames.baseline.height if frames.baseline is not None else 0
    lines = [
        f"<h1>{e(target.model.name)} · version {e(target.version.version)} · run {run.id}</h1>",
        f"<p>Window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
        f"(run status {e(run.status)}). Baseline: {e(target.baseline_text)}.</p>",
        f"<p>Rows: {_rows(frames.window.height, frames.window_rows)} of the window"
        f"{'' if frames.window_rows else ' (no events: nothing to compare)'}; "
        f"{_rows(frames.labelled.height, frames.labelled_rows)} labelled; "
        f"{_rows(baseline_shown, frames.baseline_rows)} of the baseline.</p>",
    ]
    if drifted is not None:
        lines.append(f"<h2>Drifted columns ({len(drifted)})</h2>")
        items = "".join(f"<li>{e(d.column)}: {e(d.method)} {d.score:.4g}</li>" for d in drifted)
        lines.append(f'<ul id="drifted-columns">{items}</ul>')
    if quality_error:
        lines.append(f"<p>Quality of the labelled rows not shown: {e(quality_error)}.</p>")
    if skipped:
        lines.append(f"<p>Not compared (text or no values): {e(', '.join(skipped))}.</p>")
    style = "font-family:sans-serif;padding:8px 24px;border-bottom:1px solid #ddd"
    return f'<section id="modelwatch-summary" style="{style}">{"".join(lines)}</section>'


def _rows(shown: int, total: int) -> str:
    if shown == total:
        return f"{total:,}"
    return f"{shown:,} sampled of {total:,}"


def _page(summary: str) -> str:
    head = '<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8"></head>'
    return f"{head}<body>{summary}</body></html>"
