"""Who calls a management RPC, and what they may do: passwords, access tokens and project roles.

Every management RPC — all of ProjectService, DeploymentService, ApiKeyService and UserService
(Login aside) and UsageService.QueryUsage — starts with :meth:`Authenticator.caller`, which reads
``authorization: Bearer <JWT>`` from the call's metadata and answers UNAUTHENTICATED when it is
missing, malformed, badly signed or expired. The RPCs that gateways call on the internal network,
RoutingService.WatchRouting and UsageService.RecordUsage, take no token.

Access tokens are HS256 JWTs signed with the `jwt_secret` setting, valid 15 minutes, with the
claims ``sub`` (user id), ``admin`` (platform admin), ``iat``, ``exp`` and a random ``jti``. They
are not stored: a token's admin flag holds until it expires. Project roles are not in the token;
they are read from `project_members` in the RPC's own transaction, so a change applies at once.

Roles (ProjectRole values grow with what they allow): a viewer reads a project's resources, an
editor also changes its deployments and keys, an owner also manages its members and updates or
deletes it; a platform admin may do everything. A caller without a role in a project gets the
NOT_FOUND a missing project gets, so ids do not reveal what exists; a caller whose role is too
low gets PERMISSION_DENIED.

Passwords are hashed with argon2id (argon2-cffi's defaults), off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bud.auth.v1 import user_pb2
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.convert import role_name, role_value
from app.db import models
from app.services.common import get_project, project_not_found
from budrt.errors import Reason, permission_denied, unauthenticated

VIEWER = user_pb2.PROJECT_ROLE_VIEWER
EDITOR = user_pb2.PROJECT_ROLE_EDITOR
OWNER = user_pb2.PROJECT_ROLE_OWNER
ROLES = (VIEWER, EDITOR, OWNER)

TOKEN_LIFETIME_S = 15 * 60
TOKEN_TYPE = "Bearer"
# Tolerated clock difference between the app replica that issued a token and the one checking it.
CLOCK_SKEW_S = 10
_ALGORITHM = "HS256"
_CLAIMS = ("sub", "admin", "iat", "exp", "jti")

_hasher = PasswordHasher()


async def hash_password(password: str) -> str:
    """The argon2id hash of a password (computed in a worker thread)."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`. With no hash (no such user) a dummy hash is
    checked all the same, so the answer takes as long and does not reveal which usernames exist."""

    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than the current ones."""
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a call, as its token says."""

    user_id: str
    admin: bool


class Authenticator:
    """Issues access tokens and turns a call's bearer token into its :class:`Caller`."""

    def __init__(self, secret: str, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        if not secret:
            raise ValueError("the JWT secret is empty")
        self._secret = secret
        self.lifetime_s = lifetime_s

    def issue(self, user: models.User) -> str:
        """A signed access token for `user`, valid `lifetime_s` seconds from now."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user.id,
            "admin": user.platform_admin,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Caller:
        """The caller a token names; UNAUTHENTICATED unless it is well signed, complete and
        unexpired."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[_ALGORITHM], leeway=CLOCK_SKEW_S,
                options={"require": list(_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the access token has expired; log in again", reason=Reason.TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise unauthenticated("invalid access token", reason=Reason.INVALID_TOKEN) from None
        user_id, admin = claims["sub"], claims["admin"]
        if not isinstance(user_id, str) or not user_id or not isinstance(admin, bool):
            raise unauthenticated("invalid access token", reason=Reason.INVALID_TOKEN)
        return Caller(user_id, admin)

    def caller(self, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of an RPC, from its ``authorization: Bearer <token>`` metadata."""
        values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        if not values:
            raise unauthenticated(
                "missing access token: send 'authorization: Bearer <token>' (UserService.Login gives one)"
            )
        scheme, _, token = str(values[0]).partition(" ")
        if len(values) > 1 or scheme.lower() != TOKEN_TYPE.lower() or not token.strip():
            raise unauthenticated("malformed authorization: expected one 'Bearer <token>'", reason=Reason.INVALID_TOKEN)
        return self.verify(token.strip())


def role_label(role: int) -> str:
    """'viewer', 'editor' or 'owner'."""
    return role_name(role).removeprefix("PROJECT_ROLE_").lower()


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
    if held < role:
        raise permission_denied(
            f"this needs the {role_label(role)} role in project {project_id!r}; yours is {role_label(held)}"
        )


def require_admin(caller: Caller, what: str) -> None:
    """PERMISSION_DENIED unless the caller is a platform admin."""
    if not caller.admin:
        raise permission_denied(f"{what} is for platform admins")


def visible_projects(caller: Caller) -> Select[tuple[models.Project]]:
    """The projects the caller may see: those they have a role in (all for a platform admin)."""
    stmt = select(models.Project)
    if not caller.admin:
        member = models.ProjectMember
        stmt = stmt.where(
            models.Project.id.in_(select(member.project_id).where(member.user_id == caller.user_id))
        )
    return stmt
