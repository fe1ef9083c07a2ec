"""Alembic migrations of trainctl's database (run them with core.migrate.upgrade_database)."""
