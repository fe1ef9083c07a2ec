"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import core.models  # noqa: F401
from core.db import Base, make_engine, utcnow
from core.migrate import upgrade_database


def test_models_match_migrations(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"job", "epoch_metric", "checkpoint", "dataset", "api_key", "worker", "alembic_version"} <= tables


def test_downgrade_to_base_and_back(database_url: str) -> None:
    from alembic import command

    from core.migrate import alembic_config

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade_database(database_url)
    test_models_match_migrations(database_url)


def test_curve_store_is_backfilled_for_finished_jobs(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import insert, select

    from core.curves import curve_rows
    from core.migrate import alembic_config
    from core.models import EpochMetric, Job, JobCurve, JobCurveField

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        records = {
            job_id: [{"epoch": epoch, "val_loss": 1 / epoch, "flag": True, "layers": []} for epoch in (1, 2)]
            for job_id in ("done", "failed", "running")
        }
        records["done"][1]["acc"] = 0.5
        with engine.begin() as connection:
            for job_id, status in (("done", "succeeded"), ("failed", "failed"), ("running", "running")):
                connection.execute(
                    insert(Job.__table__).values(
                        id=job_id,
                        owner="o",
                        spec={},
                        status=status,
                        warnings=[],
                        epochs=2,
                        epoch=2,
                        cancel_requested=False,
                        attempts=1,
                        created_at=utcnow(),
                        queued_at=utcnow(),
                    )
                )
                connection.execute(
                    insert(EpochMetric.__table__),
                    [
                        {"job_id": job_id, "epoch": r["epoch"], "record": r, "created_at": utcnow()}
                        for r in records[job_id]
                    ],
                )
        upgrade_database(database_url)
        with engine.connect() as connection:
            curves = {row.job_id: row.epochs for row in connection.execute(select(JobCurve.__table__))}
            fields = {
                (row.job_id, row.field): row.series
                for row in connection.execute(select(JobCurveField.__table__))
            }
    finally:
        engine.dispose()
    expected = {
        job_id: curve_rows(job_id, [(r["epoch"], r) for r in records[job_id]])
        for job_id in ("done", "failed")
    }
    assert curves == {job_id: row["epochs"] for job_id, (row, _fields) in expected.items()}
    assert fields == {
        (f["job_id"], f["field"]): f["series"] for _row, rows in expected.values() for f in rows
    }
    assert {field for _job, field in fields} == {"epoch", "val_loss", "acc"}
