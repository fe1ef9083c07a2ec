"""epoch_metric.record as JSONB on PostgreSQL: compare extracts fields of many records without re-parsing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (SQLite keeps its JSON text: nothing to do there)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "epoch_metric",
        "record",
        type_=postgresql.JSONB(),
        existing_type=sa.JSON(),
        existing_nullable=False,
        postgresql_using="record::jsonb",
    )


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "epoch_metric",
        "record",
        type_=sa.JSON(),
        existing_type=postgresql.JSONB(),
        existing_nullable=False,
        postgresql_using="record::json",
    )
