"""Who calls a management RPC, and what they may do in the app's projects.

The mechanisms live in the `auth` package (access tokens, passwords, roles); this module adds
what needs the app's database: the caller's role in a project, read from `project_members` in the
RPC's own transaction (so a change applies at once), and :class:`Access`, the prologue every
management RPC starts with.

Every management RPC — all of ProjectService, DeploymentService, EngineRegistryService, ApiKeyService
and UserService
(Login aside) and UsageService.QueryUsage — first authenticates its caller (UNAUTHENTICATED, before
any validation, when the ``authorization: Bearer <JWT>`` metadata is missing, malformed, badly
signed or expired, or when its user is gone, disabled, or has a newer token generation than the
token's: one read of the user's row per call, which makes a password change, a disable or a role
taken away revoke the user's earlier tokens at once). The RPCs that gateways call on the internal network,
RoutingService.WatchRouting and UsageService.RecordUsage, take no token.

A caller without a role in a project gets the NOT_FOUND a missing project gets, so ids do not
reveal what exists; a caller whose role is too low gets PERMISSION_DENIED; a platform admin may do
everything (see `auth.roles`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from google.protobuf.message import Message
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.convert import role_value
from app.db import models
from app.db.session import Database
from app.services.common import get_project, project_not_found
from app.validation import require
from auth.roles import require_held
from auth.tokens import Authenticator, Caller
from budrt.errors import Reason, unauthenticated

# How an RPC's transaction treats the routing revision (see `Database`).
Transaction = Literal["snapshot", "transaction", "mutation"]


async def project_role(session: AsyncSession, user_id: str, project_id: str) -> int | None:
    """The user's role in the project; None when they have none."""
    held = await session.scalar(
        select(models.ProjectMember.role).where(
            models.ProjectMember.project_id == project_id, models.ProjectMember.user_id == user_id
        )
    )
    return None if held is None else role_value(held)


async def require_role(
    session: AsyncSession, caller: Caller, project_id: str, role: int, param: str = "project_id"
) -> None:
    """Lets the call go on when the caller holds `role` or a higher one in the project, or is a
    platform admin (the project must exist then). NOT_FOUND, exactly as for a missing project,
    when the caller has no role in it; PERMISSION_DENIED when their role is too low."""
    if caller.admin:
        await get_project(session, project_id, param)
        return
    held = await project_role(session, caller.user_id, project_id) if project_id else None
    if held is None:
        raise project_not_found(project_id, param)
    require_held(held, role, project_id)


def visible_projects(caller: Caller) -> Select[tuple[models.Project]]:
    """The projects the caller may see: those they have a role in (all for a platform admin)."""
    stmt = select(models.Project)
    if not caller.admin:
        member = models.ProjectMember
        stmt = stmt.where(
            models.Project.id.in_(select(member.project_id).where(member.user_id == caller.user_id))
        )
    return stmt


def field_value(message: Message, path: str) -> Any:
    """The value at a dotted field path of a message (``"api_key.id"``)."""
    value: Any = message
    for name in path.split("."):
        value = getattr(value, name)
    return value


class Access:
    """The prologue of a management RPC, in its fixed order: the caller (UNAUTHENTICATED first),
    the request's required fields (INVALID_ARGUMENT), the RPC's own checks, then a transaction in
    which the caller's role in the project is checked before anything else is read."""

    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._auth = auth

    async def caller(self, context: Any, request: Message | None = None, *required: str) -> Caller:
        """The authenticated caller, whose token is still current (see :meth:`current`); then
        INVALID_ARGUMENT for the first of the `required` field paths of `request` that is empty
        (each named as its own `param`)."""
        caller = await self.current(self._auth.caller(context))
        for path in required:
            require(field_value(request, path), path)
        return caller

    async def current(self, caller: Caller) -> Caller:
        """The caller as their user's row says now: UNAUTHENTICATED (INVALID_TOKEN) when the user
        is gone or disabled, or their token generation moved on since the token was issued; the
        platform-admin flag is the row's."""
        async with self._db.snapshot() as session:
            user = await session.get(models.User, caller.user_id)
        if user is None or user.disabled or user.token_generation != caller.generation:
            raise unauthenticated(
                "the access token has been revoked; log in again", reason=Reason.INVALID_TOKEN
            )
        return Caller(user.id, user.platform_admin, user.token_generation)

    @asynccontextmanager
    async def project(
        self,
        caller: Caller,
        project_id: str,
        role: int,
        *,
        kind: Transaction = "snapshot",
        param: str = "project_id",
        lock: bool = False,
    ) -> AsyncIterator[AsyncSession]:
        """A transaction of `kind` in which the caller holds at least `role` in the project
        (NOT_FOUND, named `param`, when they have no role in it or it does not exist;
        PERMISSION_DENIED when their role is lower). With `lock`, the project's row is locked
        first, serialising changes of its memberships (PostgreSQL; SQLite writers queue anyway)."""
        async with getattr(self._db, kind)() as session:
            if lock:
                await session.execute(
                    select(models.Project.id).where(models.Project.id == project_id).with_for_update()
                )
            await require_role(session, caller, project_id, role, param)
            yield session
