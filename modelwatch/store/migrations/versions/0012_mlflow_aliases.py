"""The MLflow registry sync: the version each synced alias last agreed on

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlflow_aliases",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("alias", sa.String(16), primary_key=True),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("synced_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlflow_aliases")
