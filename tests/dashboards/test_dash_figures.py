"""The model page's metric chart: the reference band shaded, estimates beside the realized
figure, and a legend that stays short."""

from __future__ import annotations

from typing import Any

import polars as pl

from dashboards.app.data import RESULT_SCHEMA, champion_over_time
from dashboards.app.figures import (
    MAX_VERSIONS,
    cost_figure,
    drift_figure,
    metric_figure,
    quality_figure,
    runs_figure,
    series_key,
)

TRANSITIONS = pl.DataFrame(schema={"x": pl.String, "to_state": pl.String})


def _rows(
    metric: str, version: str, alias: str | None, values: list[float], **extra: Any
) -> pl.DataFrame:
    n = len(values)
    columns: dict[str, Any] = {name: [None] * n for name in RESULT_SCHEMA}
    columns.update(
        run_id=list(range(n)),
        version_id=[int(version.removeprefix("v"))] * n,
        window_start_us=[i * 3_600_000_000 for i in range(n)],
        metric=[metric] * n,
        column_name=[""] * n,
        label=[""] * n,
        value=values,
        status=["ok"] * n,
    )
    columns.update({k: [v] * n for k, v in extra.items()})
    frame = pl.DataFrame(columns, schema=RESULT_SCHEMA)
    window = pl.from_epoch("window_start_us", time_unit="us").dt.replace_time_zone("UTC")
    return frame.with_columns(
        pl.lit(version).alias("version"),
        pl.lit(alias, pl.String).alias("alias"),
        pl.lit("estimation").alias("family"),
        pl.format("2026-12-01 {}:00", pl.col("run_id")).alias("x"),
        window.alias("window"),
    )


def _traces(fig: Any) -> dict[str, Any]:
    return {trace.name: trace for trace in fig.data if trace.showlegend is not False}


def test_the_champions_band_is_shaded_once_and_estimates_sit_beside_the_realized_figure() -> None:
    results = pl.concat(
        [
            _rows(
                "estimated_accuracy",
                "v1",
                "champion",
                [0.9, 0.88, 0.8],
                band_low=0.85,
                band_high=0.95,
            ),
            _rows(
                "estimated_accuracy",
                "v2",
                "challenger",
                [0.91, 0.9, 0.9],
                band_low=0.8,
                band_high=0.99,
            ),
            _rows("accuracy", "v1", "champion", [0.89, 0.87]),
            _rows("roc_auc", "v1", "champion", [0.7, 0.7]),
        ]
    )
    fig = metric_figure(results, series_key("estimated_accuracy", "", ""), [], TRANSITIONS)
    shown = _traces(fig)
    assert set(shown) == {"v1 (champion)", "v2 (challenger)", "band", "realized"}
    band = shown["band"]
    assert list(band.y) == [0.85, 0.85, 0.85]  # the champion's band, not the challenger's
    assert band.fill == "tonexty"
    assert list(shown["realized"].y) == [0.89, 0.87]
    assert len(shown) <= 8


def test_a_series_without_a_band_or_an_estimate_draws_only_its_versions() -> None:
    results = _rows("roc_auc", "v1", "champion", [0.7, 0.72])
    fig = metric_figure(results, series_key("roc_auc", "", ""), [], TRANSITIONS)
    assert set(_traces(fig)) == {"v1 (champion)"}


def test_the_drift_view_marks_the_columns_in_breach_after_correction() -> None:
    age = _rows("data_drift", "v1", "champion", [0.3, 0.02], column_name="age")
    age = age.with_columns(
        pl.Series("status", ["breach", "ok"]), pl.Series("p_adjusted", [1e-6, 0.4])
    )
    plan = _rows("data_drift", "v1", "champion", [0.05, 0.04], column_name="plan")
    plan = plan.with_columns(pl.Series("p_adjusted", [0.01, 0.9]))  # significant, below the floor
    results = pl.concat([age, plan])
    drifted = drift_figure(results, "data_drift", 1, "drifted").data[0]
    assert list(drifted.y) == ["age", "plan"]
    assert drifted.z.tolist() == [[1, 0], [0, 0]]
    adjusted = drift_figure(results, "data_drift", 1, "p_adjusted").data[0]
    assert adjusted.z.tolist() == [[1e-6, 0.4], [0.01, 0.9]]


def test_the_series_picker_offers_estimates_and_multivariate_scores() -> None:
    from dashboards.app.pages.model import _series

    results = pl.concat(
        [
            _rows("estimated_accuracy", "v1", "champion", [0.9]),
            _rows("reconstruction_error", "v1", "champion", [1.1]).with_columns(
                pl.lit("drift").alias("family")
            ),
            _rows("data_drift", "v1", "champion", [0.2], column_name="age").with_columns(
                pl.lit("drift").alias("family")
            ),
        ]
    )
    keys, _ = _series(results)
    assert keys == [
        series_key("estimated_accuracy", "", ""),
        series_key("reconstruction_error", "", ""),
    ]


def _legend(fig: Any) -> list[str]:
    return [t.name for t in fig.data if t.showlegend is not False]


def test_quality_draws_the_worst_column_per_check_and_at_most_eight_entries() -> None:
    checks = [f"check_{i}" for i in range(10)]
    parts = [
        _rows(check, "v1", "champion", [0.01 * i, 0.02 * i], column_name=column)
        for i, check in enumerate(checks)
        for column in ("age", "plan", "spend")
    ]
    parts.append(_rows("volume", "v1", "champion", [400.0, 420.0]))
    parts.append(_rows("missing_rate", "v1", "champion", [0.5, 0.1], column_name="age"))
    parts.append(_rows("missing_rate", "v1", "champion", [0.2, 0.3], column_name="plan"))
    results = pl.concat(parts).with_columns(pl.lit("quality").alias("family"))
    fig = quality_figure(results, 1)
    names = _legend(fig)
    assert len(names) == 8 and "volume" in names
    assert "top 7 of 11 checks" in fig.layout.title.text
    missing = next(t for t in fig.data if t.name == "missing_rate")
    assert list(missing.y) == [0.5, 0.3]  # the worst column of each window


def test_cost_keeps_one_entry_per_version_and_at_most_four_versions() -> None:
    parts = []
    for k in range(1, 7):
        alias = {1: "champion", 6: "challenger"}.get(k)
        parts.append(_rows("cost_per_1k", f"v{k}", alias, [0.1, 0.2]))
        for label in ("p50", "p95", "p99"):
            parts.append(_rows("latency", f"v{k}", alias, [20.0, 21.0], label=label))
    fig = cost_figure(pl.concat(parts))
    assert _legend(fig) == ["v1 (champion)", "v4", "v5", "v6 (challenger)"]
    assert len(fig.data) == 2 * MAX_VERSIONS  # p95 and cost per version


def test_the_champion_view_keeps_its_range_across_a_promotion() -> None:
    v1 = _rows("data_drift", "v1", "champion", [0.1, 0.2, 0.3, 0.4], column_name="age")
    v2 = _rows("data_drift", "v2", None, [0.5, 0.6, 0.7, 0.8], column_name="age")
    results = pl.concat([v1.with_columns(pl.lit("none").alias("alias")), v2])
    promoted_at = v1["window"][2]
    moves = pl.DataFrame(
        {
            "alias": ["champion", "champion"],
            "to_version": ["v1", "v2"],
            "changed_at": [v1["window"][0], promoted_at],
        }
    )
    shown = champion_over_time(results, moves)
    assert shown.sort("window")["value"].to_list() == [0.1, 0.2, 0.7, 0.8]
    heatmap = drift_figure(shown, "data_drift", None, "value").data[0]
    assert heatmap.z.tolist() == [[0.1, 0.2, 0.7, 0.8]]


def test_runs_are_counted_by_their_worst_outcome() -> None:
    ok = _rows("accuracy", "v1", "champion", [0.9, 0.9, 0.9])
    breach = _rows("f1", "v1", "champion", [0.1, 0.1, 0.1]).with_columns(
        pl.Series("status", ["breach", "ok", "ok"])
    )
    fig = runs_figure(pl.concat([ok, breach]))
    counts = {t.name: sum(t.y) for t in fig.data}
    assert counts == {"ok": 2, "breach": 1}
