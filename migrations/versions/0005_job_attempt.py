"""job.attempt: the token of the claim that owns a running job (fencing of a replaced worker's writes)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("attempt")
