"""CloudEvents from model servers' request loggers: halves waiting for their partner,
and the count of halves dropped unpaired

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloudevent_halves",
        sa.Column("pair_key", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_cloudevent_halves_received_us", "cloudevent_halves", ["received_us"])
    op.create_table(
        "cloudevent_drops",
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("dropped", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cloudevent_drops")
    op.drop_table("cloudevent_halves")
