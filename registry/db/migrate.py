"""The registry's schema migrations (alembic, run programmatically; revisions in
`registry/migrations/`, recorded in their own version table `alembic_version_registry` so they
live beside the app's in one database).

The registry calls :func:`upgrade_database` when its service is first used at start (see
`registry.component`), like the app does for its own. Developers add a revision with
``python -m registry.db.migrate revision -m "what changed"``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from budrt.database import alembic_config, check_schema_current, upgrade_schema
from registry.db.models import VERSION_TABLE
from registry.db.session import RegistryDatabase

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Arbitrary constant naming the registry's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x6275645F726567  # "bud_reg"


async def upgrade_database(db: RegistryDatabase, revision: str = "head") -> None:
    """Brings the registry's schema to `revision` (default: the newest), in one transaction."""
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: upgrade_schema(c, MIGRATIONS_DIR, _PG_MIGRATION_LOCK, revision))


async def check_database_current(db: RegistryDatabase) -> None:
    """Raises `budrt.database.SchemaBehindError` unless the registry's schema is at the code's
    head (its service with `migrate_on_start` off: `budrt migrate` ran before the rollout)."""
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda c: check_schema_current(c, MIGRATIONS_DIR, "registry", VERSION_TABLE))


def main(argv: list[str] | None = None) -> int:
    """``python -m registry.db.migrate {upgrade,revision -m MSG}`` on the configured database."""
    from budrt.settings import load
    from registry.component import host_settings
    from registry.settings import RegistrySettings

    parser = argparse.ArgumentParser(description="registry database migrations")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("upgrade", help="upgrade the schema to the newest revision")
    rev = sub.add_parser("revision", help="autogenerate a revision from the models")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    async def run() -> None:
        db = RegistryDatabase(load(RegistrySettings).resolved_database_url(host_settings()))
        try:
            await upgrade_database(db)
            if args.cmd == "revision":

                def generate(connection: Connection) -> None:
                    config = alembic_config(MIGRATIONS_DIR, connection)
                    command.revision(config, message=args.message, autogenerate=True)

                async with db.engine.begin() as conn:
                    await conn.run_sync(generate)
        finally:
            await db.dispose()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
