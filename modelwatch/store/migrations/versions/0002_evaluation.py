"""evaluation: monitors, runs, metric results, ingest rejections

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from modelwatch.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "evaluation_runs",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column(
            "monitor_id",
            sa.Integer,
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("window_start_us", sa.BigInteger, nullable=False),
        sa.Column("window_end_us", sa.BigInteger, nullable=False),
        sa.Column("segment_key", sa.String(128), nullable=False),
        sa.Column("data_state", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("n_events", sa.BigInteger, nullable=False),
        sa.Column("n_labels", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "monitor_id",
            "version_id",
            "window_start_us",
            "segment_key",
            "data_state",
            name="uq_evaluation_runs_key",
        ),
    )
    op.create_index("ix_evaluation_runs_status", "evaluation_runs", ["status", "window_start_us"])
    op.create_index("ix_evaluation_runs_monitor", "evaluation_runs", ["monitor_id", "id"])
    op.create_table(
        "metric_results",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column(
            "run_id",
            sa.BigInteger,
            sa.ForeignKey("evaluation_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("monitor_id", sa.Integer, nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("window_start_us", sa.BigInteger, nullable=False),
        sa.Column("window_end_us", sa.BigInteger, nullable=False),
        sa.Column("current", sa.Integer, nullable=False),
        sa.Column("segment", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("column_name", sa.String(256), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("p_value", sa.Float, nullable=True),
        sa.Column("ci_low", sa.Float, nullable=True),
        sa.Column("ci_high", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_metric_results_query", "metric_results", ["version_id", "metric", "window_start_us"]
    )
    op.create_index("ix_metric_results_run", "metric_results", ["run_id"])
    op.create_table(
        "ingest_rejections",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version_id", sa.Integer, nullable=True),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("first_error", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_ingest_rejections_version", "ingest_rejections", ["version_id", "received_us"]
    )


def downgrade() -> None:
    for name in ("ingest_rejections", "metric_results", "evaluation_runs", "monitors"):
        op.drop_table(name)
