"""Alembic migrations of trainctl's database (run them with api.migrate.upgrade_database)."""
