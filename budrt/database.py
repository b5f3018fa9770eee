"""What every service that keeps tables shares about databases: the async-driver form of a URL,
owner-only SQLite files, and running one component's alembic migrations programmatically.

The app (`app.db`) and the registry (`registry.db`) each keep their own tables and their own
alembic environment (their own version table), in the same database by default; both go through
these helpers so a URL means the same thing, a SQLite file is private the same way, and
migrations are serialised the same way on PostgreSQL (an advisory lock per component).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from budrt.settings import private_dir

log = logging.getLogger(__name__)


def async_database_url(url: str) -> URL:
    """The async-driver form of a database URL: SQLite via aiosqlite, PostgreSQL via psycopg 3.

    Accepts ``sqlite:///path``, ``sqlite+aiosqlite:///path``, ``postgresql://...``,
    ``postgres://...`` and ``postgresql+psycopg://...``.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg_async", "postgresql"):
            raise ValueError(
                f"unsupported PostgreSQL driver {parsed.get_driver_name()!r}: use postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


# SQLite's companions of a database file (WAL mode). SQLite creates them with the database file's
# own permission bits, so a 0600 database gets 0600 companions.
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_sqlite_file(path: Path) -> None:
    """Makes the SQLite database at `path` readable by its owner only (it holds password and key
    hashes): creates it empty with mode 0600 before SQLite opens it (SQLite would create it 0644
    under the usual umask), and tightens an existing one and its companions, with a warning.

    Missing parent directories are created 0700; an existing parent is left as it is (the URL may
    name any directory; the data dir itself is tightened by `RuntimeSettings.ensure_data_dir`).
    """
    private_dir(path.parent, tighten=False)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_COMPANIONS)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                file.chmod(mode & 0o700)
                log.warning(
                    "tightened a database file to owner-only access",
                    extra={"path": str(file), "was": oct(mode), "now": oct(mode & 0o700)},
                )
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours: say so, and let SQLite open it as it is
            log.warning(
                "a database file is readable by others and not ours to tighten", extra={"path": str(file)}
            )


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL that names a plain file (not ":memory:", not a `file:` URI with
    options of its own); None otherwise."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.query.get("uri"):
        return None
    return Path(url.database).expanduser()


def alembic_config(script_location: Path, connection: Connection | None = None) -> Config:
    """An alembic Config for the migrations in `script_location` (no alembic.ini), optionally
    bound to an open connection (its env.py reads ``config.attributes["connection"]``)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_schema(
    connection: Connection, script_location: Path, lock_key: int, revision: str = "head"
) -> None:
    """Brings one component's schema to `revision` on an open connection (inside the caller's
    transaction). On PostgreSQL, processes starting together queue on the advisory lock
    `lock_key` (one per component), so the schema is upgraded once; SQLite writers queue on the
    write lock anyway."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
    command.upgrade(alembic_config(script_location, connection), revision)


class SchemaBehindError(RuntimeError):
    """The database's schema is not the code's (a service told not to migrate at start found it
    behind, or ahead after a rollback): `budrt migrate` brings it to the code's head."""


def check_schema_current(
    connection: Connection, script_location: Path, component: str, version_table: str = "alembic_version"
) -> None:
    """Raises SchemaBehindError unless the schema recorded in `version_table` is the head of the
    migrations in `script_location`: what a service that does not migrate at start
    (`migrate_on_start` false: a Job ran `budrt migrate` before the rollout) checks instead, so a
    replica never serves a schema its code does not know."""
    heads = set(ScriptDirectory.from_config(alembic_config(script_location)).get_heads())
    current = set(
        MigrationContext.configure(connection, opts={"version_table": version_table}).get_current_heads()
    )
    if current != heads:
        found = ", ".join(sorted(current)) or "none (an empty database)"
        raise SchemaBehindError(
            f"the {component} database schema is at revision {found}, this version needs "
            f"{', '.join(sorted(heads))}: run `budrt migrate` (the Helm chart's migration Job, "
            "compose's `migrate` service) before starting it, or set migrate_on_start=true"
        )


# How long a SQLite writer waits for another one (another service or call on the same file).
SQLITE_BUSY_TIMEOUT_S = 30.0


def install_sqlite_hooks(engine: AsyncEngine, writer_option: str | None = None) -> None:
    """SQLite as the services use it: WAL (readers beside a writer), foreign keys, the busy
    timeout, and transactions begun by us rather than the sqlite3 driver (which would not BEGIN
    for SELECTs or DDL). A transaction begins ``BEGIN IMMEDIATE`` (a writer queues on the busy
    timeout instead of failing when it upgrades a read lock) when its connection carries the
    execution option `writer_option`, or always when `writer_option` is None."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = writer_option is None or conn.get_execution_options().get(writer_option)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
