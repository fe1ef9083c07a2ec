"""job_curve and job_curve_field: each finished job's per-epoch numbers as packed arrays (compare reads a
row per job and field, not per epoch); backfilled from the epoch rows of the jobs already finished

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.curves import curve_rows

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = ("succeeded", "failed", "cancelled")
BATCH = 200  # jobs per read of their epoch rows


def upgrade() -> None:
    """Apply this revision."""
    curve = op.create_table(
        "job_curve",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("epochs", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_curve_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_curve")),
    )
    curve_field = op.create_table(
        "job_curve_field",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("series", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_curve_field_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "field", name=op.f("pk_job_curve_field")),
    )
    assert curve is not None and curve_field is not None
    job = sa.table("job", sa.column("id", sa.String()), sa.column("status", sa.String()))
    epoch_metric = sa.table(
        "epoch_metric",
        sa.column("job_id", sa.String()),
        sa.column("epoch", sa.Integer()),
        sa.column("record", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    bind = op.get_bind()
    finished = list(bind.scalars(sa.select(job.c.id).where(job.c.status.in_(FINISHED)).order_by(job.c.id)))
    for start in range(0, len(finished), BATCH):
        ids = finished[start : start + BATCH]
        records: dict[str, list[tuple[int, dict]]] = {job_id: [] for job_id in ids}
        rows = bind.execute(
            sa.select(epoch_metric.c.job_id, epoch_metric.c.epoch, epoch_metric.c.record)
            .where(epoch_metric.c.job_id.in_(ids))
            .order_by(epoch_metric.c.job_id, epoch_metric.c.epoch)
        )
        for job_id, epoch, record in rows:
            records[job_id].append((epoch, record))
        built = [curve_rows(job_id, runs) for job_id, runs in records.items()]
        op.bulk_insert(curve, [row for row, _fields in built])
        fields = [field for _row, per_job in built for field in per_job]
        if fields:
            op.bulk_insert(curve_field, fields)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("job_curve_field")
    op.drop_table("job_curve")
