"""metric results: the p-value adjusted for the run's other tests, and the effect size

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        batch.add_column(sa.Column("p_adjusted", sa.Float, nullable=True))
        batch.add_column(sa.Column("effect", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        batch.drop_column("effect")
        batch.drop_column("p_adjusted")
