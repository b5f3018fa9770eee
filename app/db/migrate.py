"""Schema migrations (alembic, run programmatically; the revisions live in `app/migrations/`).

The app calls :func:`upgrade_database` at start, before serving, when `migrate_on_start` is on
(the default: the one-machine mesh). Several app processes starting together on one PostgreSQL
database queue on an advisory lock (SQLite: on the write lock), so the schema is upgraded once.
In a cluster the migrations run once per release, before the rollout (`budrt migrate`: the Helm
chart's Job, compose's one-shot service), and the replicas, started with `migrate_on_start`
off, only check that the schema is the code's (:func:`check_database_current`).

Developers add a revision with ``python -m app.db.migrate revision -m "what changed"`` (compared
against the models, on the database named by the settings), then review the generated file.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from app.db.session import Database
from budrt.database import alembic_config as shared_alembic_config
from budrt.database import check_schema_current, upgrade_schema

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Arbitrary constant naming the app's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x6275645F6D6967  # "bud_mig"


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for the app's migrations, optionally bound to an open connection."""
    return shared_alembic_config(MIGRATIONS_DIR, connection)


async def upgrade_database(db: Database, revision: str = "head") -> None:
    """Brings the schema to `revision` (default: the newest), in one transaction."""
    async with db.write_engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def check_database_current(db: Database) -> None:
    """Raises `budrt.database.SchemaBehindError` unless the app's schema is at the code's head."""
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda c: check_schema_current(c, MIGRATIONS_DIR, "app"))


def _upgrade(connection: Connection, revision: str) -> None:
    upgrade_schema(connection, MIGRATIONS_DIR, _PG_MIGRATION_LOCK, revision)


async def _autogenerate(db: Database, message: str) -> None:
    await upgrade_database(db)

    def generate(connection: Connection) -> None:
        command.revision(alembic_config(connection), message=message, autogenerate=True)

    async with db.engine.begin() as conn:
        await conn.run_sync(generate)


def main(argv: list[str] | None = None) -> int:
    """``python -m app.db.migrate {upgrade,revision -m MSG}`` on the configured database."""
    from app.settings import AppSettings
    from budrt.settings import load

    parser = argparse.ArgumentParser(description="app database migrations")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("upgrade", help="upgrade the schema to the newest revision")
    rev = sub.add_parser("revision", help="autogenerate a revision from the models")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    async def run() -> None:
        db = Database(load(AppSettings).resolved_database_url())
        try:
            if args.cmd == "upgrade":
                await upgrade_database(db)
            else:
                await _autogenerate(db, args.message)
        finally:
            await db.dispose()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
