"""ledger: the audit log, pipeline endpoint state, retrain requests and cooldowns, approvals

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from modelwatch.store.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _model_fk() -> sa.Column[int]:
    return sa.Column(
        "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_model", "audit_log", ["model", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "pipeline_endpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "retrain_cooldowns",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("last_requested_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("model_id", "policy", name="uq_retrain_cooldowns_key"),
    )
    op.create_table(
        "retrain_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(64), nullable=False, unique=True),
        sa.Column("trigger_key", sa.String(256), nullable=False, unique=True),
        _model_fk(),
        sa.Column("version_id", sa.Integer, nullable=True),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("window_start_us", sa.BigInteger, nullable=True),
        sa.Column("window_end_us", sa.BigInteger, nullable=True),
        sa.Column("progress", sa.Float, nullable=True),
        sa.Column("new_version_id", sa.Integer, nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_retrain_requests_model", "retrain_requests", ["model_id", "status", "requested_at"]
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pending_key", sa.String(64), nullable=True, unique=True),
        sa.Column("trigger_key", sa.String(256), nullable=True, unique=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("comment", sa.Text, nullable=False),
    )
    op.create_index("ix_approvals_model", "approvals", ["model_id", "id"])


def downgrade() -> None:
    for table in ("approvals", "retrain_requests", "retrain_cooldowns", "pipeline_endpoints"):
        op.drop_table(table)
    op.drop_table("audit_log")
