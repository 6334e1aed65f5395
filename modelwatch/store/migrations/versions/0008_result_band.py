"""metric results: the threshold band learnt from the reference (low and high edges)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        batch.add_column(sa.Column("band_low", sa.Float, nullable=True))
        batch.add_column(sa.Column("band_high", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        batch.drop_column("band_high")
        batch.drop_column("band_low")
