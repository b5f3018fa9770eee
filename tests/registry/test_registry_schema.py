"""The registry's schema: its alembic revisions match its models, on SQLite and PostgreSQL, in the
app's own database beside the app's tables, each with its own version table."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from app.db import models as app_models
from app.db.migrate import upgrade_database as upgrade_app
from app.db.session import Database
from registry.db import models
from registry.db.migrate import upgrade_database
from registry.db.session import RegistryDatabase
from tests.app.conftest import database_url, postgres_cluster  # noqa: F401  (fixtures)


def _own(metadata: object) -> object:
    tables = metadata.tables  # type: ignore[attr-defined]
    return lambda name, type_, _parents: type_ != "table" or name in tables


async def test_schema_matches_models_beside_the_apps(database_url: str) -> None:  # noqa: F811
    app_db = Database(database_url)
    db = RegistryDatabase(database_url)
    try:
        await upgrade_app(app_db)
        await upgrade_database(db)
        await upgrade_database(db)  # idempotent
        async with db.engine.connect() as conn:
            for metadata in (models.Base.metadata, app_models.Base.metadata):
                diff = await conn.run_sync(
                    lambda c, m=metadata: compare_metadata(
                        MigrationContext.configure(c, opts={"compare_type": True, "include_name": _own(m)}), m
                    )
                )
                assert diff == []
            registry_version = (
                await conn.execute(text(f"SELECT version_num FROM {models.VERSION_TABLE}"))
            ).scalar()
            app_version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert registry_version == "r0002" and app_version is not None and app_version != registry_version
    finally:
        await db.dispose()
        await app_db.dispose()
