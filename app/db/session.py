"""Database access: the async engine, the three kinds of transaction the app uses, and the
in-process notification that the routing revision moved.

- :meth:`Database.snapshot` reads a consistent view (REPEATABLE READ on PostgreSQL; one SQLite
  read transaction), so a revision read with some tables matches them exactly.
- :meth:`Database.mutation` changes projects, deployments or keys: it increments
  `routing_state.revision` *first*, in the same transaction, which both orders every change and
  serialises writers on PostgreSQL (the row lock) without deadlocks (always taken first); on
  PostgreSQL it also notifies :data:`ROUTING_CHANNEL` (delivered to other processes on commit).
- :meth:`Database.transaction` writes without touching the revision (usage bookkeeping).

Each is a span (`db.snapshot`, `db.mutation`, `db.transaction`) inside a traced call (tracing
on; a background task's reads start no trace of their own): the OpenTelemetry SQLAlchemy
instrumentation is not installed, so the transactions are traced here.

SQLite specifics: the driver's own transaction handling is switched off and SQLAlchemy emits
BEGIN itself — ``BEGIN IMMEDIATE`` for writers, so two writers queue on the busy timeout instead
of one failing at once when both upgrade from a read lock — and WAL lets readers (watch streams)
run beside a writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db.models import SINGLETON_ID, RoutingState
from budrt import tracing
from budrt.database import (
    SQLITE_BUSY_TIMEOUT_S,
    async_database_url,
    install_sqlite_hooks,
    private_sqlite_file,
    sqlite_file,
)

log = logging.getLogger(__name__)

# PostgreSQL channel every mutation notifies, in its own transaction (delivered on commit only):
# the routing feed (`app.routing_feed`) of every app replica listens on it.
ROUTING_CHANNEL = "bud_routing"

_WRITE_OPTION = "bud_write"
_ROLLBACK_INFO = "bud_rollback"


class ChangeNotifier:
    """In-process broadcast: "this process committed a change of the routing revision".

    A waiter takes :meth:`current` *before* reading the revision, then waits on it; a change
    committed in between has already set that event, so nothing is missed. Changes committed by
    other processes are seen by polling the revision.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets."""
        return self._event

    def notify(self) -> None:
        """Wakes everyone waiting on the current event."""
        event_, self._event = self._event, asyncio.Event()
        event_.set()


class Database:
    """The app's database: engine, sessions and the change notifier."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = async_database_url(url)
        self.dialect = self.url.get_backend_name()
        self.changes = ChangeNotifier()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            # A plain file path (not ":memory:", not a `file:` URI with its own options).
            if (file := sqlite_file(self.url)) is not None:
                private_sqlite_file(file)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            install_sqlite_hooks(self.engine, _WRITE_OPTION)
            snapshot_engine = self.engine
        else:
            snapshot_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        self._snapshot = async_sessionmaker(snapshot_engine, expire_on_commit=False)
        # Writers: on SQLite their transactions start with BEGIN IMMEDIATE.
        self.write_engine: AsyncEngine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read transaction whose statements all see the same committed state."""
        with tracing.child_span("db.snapshot", {"db.system.name": self.dialect}):
            async with self._snapshot() as session, session.begin():
                yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction that leaves the routing revision alone; committed on success."""
        with tracing.child_span("db.transaction", {"db.system.name": self.dialect}):
            async with self._write() as session, session.begin():
                yield session

    @asynccontextmanager
    async def mutation(self) -> AsyncIterator[AsyncSession]:
        """A write transaction that changes routing state: bumps the revision first (and, on
        PostgreSQL, notifies :data:`ROUTING_CHANNEL`, which is delivered at commit), commits on
        success and then wakes this process's routing feed. Call :func:`discard` on the session
        to roll back instead (nothing changed)."""
        with tracing.child_span("db.mutation", {"db.system.name": self.dialect}):
            async with self._write() as session:
                await session.begin()
                try:
                    await session.execute(
                        update(RoutingState)
                        .where(RoutingState.id == SINGLETON_ID)
                        .values(revision=RoutingState.revision + 1)
                    )
                    if self.dialect == "postgresql":
                        await session.execute(select(func.pg_notify(ROUTING_CHANNEL, "")))
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
                if session.info.get(_ROLLBACK_INFO):
                    await session.rollback()
                    return
                await session.commit()
        self.changes.notify()

    async def revision(self) -> int:
        """The current routing revision."""
        async with self.snapshot() as session:
            return await current_revision(session)

    async def dispose(self) -> None:
        """Closes every pooled connection."""
        await self.engine.dispose()


def discard(session: AsyncSession) -> None:
    """Marks a :meth:`Database.mutation` session to be rolled back (it changed nothing)."""
    session.info[_ROLLBACK_INFO] = True


async def current_revision(session: AsyncSession) -> int:
    """The routing revision as seen by `session`."""
    revision = await session.scalar(select(RoutingState.revision).where(RoutingState.id == SINGLETON_ID))
    if revision is None:
        raise RuntimeError("routing_state is empty: run the migrations first")
    return int(revision)
