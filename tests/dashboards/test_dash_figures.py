"""The model page's metric chart: the reference band shaded, estimates beside the realized
figure, and a legend that stays short."""

from __future__ import annotations

from typing import Any

import polars as pl

from dashboards.app.data import RESULT_SCHEMA
from dashboards.app.figures import drift_figure, metric_figure, series_key

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
    return frame.with_columns(
        pl.lit(version).alias("version"),
        pl.lit(alias, pl.String).alias("alias"),
        pl.lit("estimation").alias("family"),
        pl.format("2026-12-01 {}:00", pl.col("run_id")).alias("x"),
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
    assert set(shown) == {"v1 (champion)", "v2 (challenger)", "band", "realized v1 (champion)"}
    band = shown["band"]
    assert list(band.y) == [0.85, 0.85, 0.85]  # the champion's band, not the challenger's
    assert band.fill == "tonexty"
    assert list(shown["realized v1 (champion)"].y) == [0.89, 0.87]
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
