"""job.replica_group: the jobs of a sweep trained together as one stacked model

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("job", sa.Column("replica_group", sa.String(length=64), nullable=True))
    op.create_index("ix_job_replica_group", "job", ["replica_group"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_job_replica_group", table_name="job")
    op.drop_column("job", "replica_group")
