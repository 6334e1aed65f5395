"""alerts: policies, alerts and transitions, silences, groups, the delivery outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from modelwatch.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("trend", sa.Text, nullable=False),
        sa.Column("consecutive", sa.Integer, nullable=False),
        sa.Column("window_start_us", sa.BigInteger, nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_table(
        "alert_transitions",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column(
            "alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
    )
    op.create_index("ix_alert_transitions_alert", "alert_transitions", ["alert_id", "id"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expired_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "alert_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("receiver", sa.String(128), nullable=False),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_notified_at", UTCDateTime(), nullable=True),
        sa.Column("notified_state", sa.Text, nullable=False),
        sa.Column("thread", sa.Text, nullable=False),
        sa.UniqueConstraint("receiver", "group_key", name="uq_alert_groups_key"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stream", sa.String(512), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_deliveries_stream", "deliveries", ["stream", "id"])
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", _BIGPK, primary_key=True),
        sa.Column(
            "delivery_id",
            sa.BigInteger,
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("retry_after", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_delivery_attempts_delivery", "delivery_attempts", ["delivery_id", "attempt"]
    )


def downgrade() -> None:
    for name in (
        "delivery_attempts",
        "deliveries",
        "alert_groups",
        "silences",
        "alert_transitions",
        "alerts",
        "policies",
    ):
        op.drop_table(name)
