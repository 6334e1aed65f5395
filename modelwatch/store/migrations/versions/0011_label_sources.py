"""Scheduled label sources: how far each has been read

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_source_marks",
        sa.Column("source", sa.String(128), primary_key=True),
        sa.Column("watermark", sa.Text, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "label_source_files",
        sa.Column("source", sa.String(128), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("taken_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("label_source_files")
    op.drop_table("label_source_marks")
