"""data lifecycle: per-model retention settings, the archive's catalog, labels by time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from modelwatch.store.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_settings",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("raw_s", sa.BigInteger, nullable=True),
        sa.Column("results_s", sa.BigInteger, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "archive_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("written_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "version_id", "day", "kind", name="uq_archive_files_day"),
    )

    # Retention deletes labels by their time: existing models' label tables get the index
    # that tables of models registered from now on are created with.
    bind = op.get_bind()
    for (model_id,) in bind.execute(sa.text("SELECT id FROM models")).all():
        table = f"mw_m{int(model_id)}_labels"
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_{table}_ts ON {table} (ts_us)")


def downgrade() -> None:
    op.drop_table("archive_files")
    op.drop_table("retention_settings")
