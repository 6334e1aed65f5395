"""usage samples: an optional sample id, so that a resent batch is not stored twice

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_samples", sa.Column("sample_id", sa.String(128), nullable=True))
    op.create_index(
        "uq_usage_samples_sample", "usage_samples", ["version_id", "sample_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_usage_samples_sample", "usage_samples")
    op.drop_column("usage_samples", "sample_id")
