"""The registry's database access: an async engine on the registry's URL (the app's database by
default) and write transactions.

On SQLite every registry transaction begins with ``BEGIN IMMEDIATE`` (the registry writes rarely
and the file is shared with the app: a writer then queues on the busy timeout instead of failing
when it upgrades a read lock), WAL lets the app's readers run beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from budrt.database import (
    SQLITE_BUSY_TIMEOUT_S,
    async_database_url,
    install_sqlite_hooks,
    private_sqlite_file,
    sqlite_file,
)


class RegistryDatabase:
    """The registry's engine and sessions."""

    def __init__(self, url: str) -> None:
        self.url = async_database_url(url)
        self.dialect = self.url.get_backend_name()
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The engine, made on first use (binding the service at start opens nothing)."""
        if self._engine is None:
            self._engine = self._make_engine()
            self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    def _make_engine(self) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if (file := sqlite_file(self.url)) is not None:
                private_sqlite_file(file)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            install_sqlite_hooks(engine)
        return engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A transaction, committed on success and rolled back on an exception."""
        self.engine  # noqa: B018  (made on first use)
        assert self._sessions is not None
        async with self._sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        """Closes every pooled connection."""
        if self._engine is not None:
            await self._engine.dispose()
