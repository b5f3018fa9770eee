"""UserService: users, login and project membership.

Login exchanges a username and password for an access token (see `auth.tokens`); it is the one RPC
of the service that takes no token. Platform admins create and list users. A user sees
themselves, and users they share a project with; a platform admin sees everyone. A project's
owners (and platform admins) manage its members; a project keeps at least one owner unless a
platform admin removes it. Memberships are not routing state: their transactions leave the
routing revision alone.
"""

from __future__ import annotations

import grpc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import ids
from app.authz import Access
from app.convert import member_to_proto, role_name, user_to_proto
from app.db import models
from app.db.models import utcnow
from app.db.session import Database
from app.services.common import conflicts_as
from app.services.pagination import fetch_page
from app.validation import check_display_name, check_password, check_username, require
from auth.login_throttle import LoginThrottle
from auth.passwords import hash_password, needs_rehash, verify_password
from auth.roles import OWNER, ROLES, require_admin
from auth.tokens import TOKEN_TYPE, Authenticator, Caller
from bud.auth.v1 import user_pb2, user_pb2_grpc
from budrt.errors import (
    Reason,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    unauthenticated,
)
from budrt.grpc_server import ServiceBinding

# GetUser's name for the caller.
ME = "me"


async def create_user(
    session: AsyncSession,
    username: str,
    password_hash: str,
    display_name: str = "",
    platform_admin: bool = False,
) -> models.User:
    """Inserts a user (validated by the caller); ALREADY_EXISTS when the username is taken."""
    if await session.scalar(select(models.User.id).where(models.User.username == username)) is not None:
        raise _username_taken(username)
    row = models.User(
        id=ids.new_id(ids.USER),
        username=username,
        display_name=display_name,
        password_hash=password_hash,
        platform_admin=platform_admin,
        create_time=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


def _username_taken(username: str) -> Exception:
    return already_exists(f"a user named {username!r} already exists", param="username")


async def _member_user(session: AsyncSession, user_id: str, username: str) -> models.User:
    """The user named by id or, when the id is empty, by username; NOT_FOUND otherwise (also when
    both are given and disagree). An owner learns no more than whether the name exists, which
    adding a colleague needs."""
    if user_id:
        user = await session.get(models.User, user_id)
        if user is None or (username and user.username != username):
            raise _user_not_found(user_id)
        return user
    user = await session.scalar(select(models.User).where(models.User.username == username))
    if user is None:
        raise not_found(f"no user named {username!r}", param="username")
    return user


def _user_not_found(user_id: str) -> Exception:
    return not_found(f"user {user_id!r} not found", param="user_id")


async def _shares_a_project(session: AsyncSession, user_id: str, other_id: str) -> bool:
    mine, theirs = aliased(models.ProjectMember), aliased(models.ProjectMember)
    found = await session.scalar(
        select(mine.project_id)
        .join(theirs, theirs.project_id == mine.project_id)
        .where(mine.user_id == user_id, theirs.user_id == other_id)
        .limit(1)
    )
    return found is not None


async def _keep_an_owner(session: AsyncSession, caller: Caller, member: models.ProjectMember) -> None:
    """FAILED_PRECONDITION when `member` is the project's last owner and the caller no admin."""
    if caller.admin or member.role != role_name(OWNER):
        return
    owners = await session.scalar(
        select(func.count())
        .select_from(models.ProjectMember)
        .where(
            models.ProjectMember.project_id == member.project_id,
            models.ProjectMember.role == role_name(OWNER),
        )
    )
    if (owners or 0) <= 1:
        raise failed_precondition(
            f"user {member.user_id!r} is the last owner of project {member.project_id!r}; make another "
            "member owner first",
            reason=Reason.LAST_OWNER,
            param="user_id",
        )


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Implements bud.auth.v1.UserService."""

    def __init__(self, db: Database, auth: Authenticator, throttle: LoginThrottle | None = None) -> None:
        self._db = db
        self._auth = auth
        self._access = Access(db, auth)
        self._throttle = throttle or LoginThrottle()

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LoginResponse:
        """An access token for a username and password; UNAUTHENTICATED (the same for an unknown
        user and a wrong password) otherwise; RESOURCE_EXHAUSTED while repeated failures for the
        username make it wait (see `auth.login_throttle`). No token needed."""
        require(request.username, "username")
        require(request.password, "password")
        self._throttle.check(request.username)
        async with self._db.snapshot() as session:
            user = await session.scalar(select(models.User).where(models.User.username == request.username))
        if not await verify_password(user.password_hash if user else None, request.password) or user is None:
            self._throttle.failed(request.username)
            raise unauthenticated("wrong username or password", reason=Reason.INVALID_CREDENTIALS)
        self._throttle.succeeded(request.username)
        if needs_rehash(user.password_hash):
            new_hash = await hash_password(request.password)
            async with self._db.transaction() as session:
                row = await session.get(models.User, user.id)
                if row is not None and row.password_hash == user.password_hash:
                    row.password_hash = new_hash
        return user_pb2.LoginResponse(
            access_token=self._auth.issue(user.id, user.platform_admin),
            token_type=TOKEN_TYPE,
            expires_in=self._auth.lifetime_s,
        )

    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.CreateUserResponse:
        """Creates a user with a unique username. Platform admin."""
        caller = self._access.caller(context)
        require_admin(caller, "creating users")
        check_username(request.username, "username")
        check_password(request.password, "password")
        check_display_name(request.display_name, "display_name")
        password_hash = await hash_password(request.password)
        with conflicts_as(lambda _: _username_taken(request.username)):
            async with self._db.transaction() as session:
                row = await create_user(
                    session, request.username, password_hash, request.display_name, request.platform_admin
                )
        return user_pb2.CreateUserResponse(user=user_to_proto(row))

    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.GetUserResponse:
        """A user: the caller ("me" or their id), one they share a project with, or anyone for a
        platform admin; NOT_FOUND otherwise."""
        caller = self._access.caller(context)
        user_id = caller.user_id if request.user_id == ME else require(request.user_id, "user_id")
        async with self._db.snapshot() as session:
            visible = (
                caller.admin
                or user_id == caller.user_id
                or await _shares_a_project(session, caller.user_id, user_id)
            )
            row = await session.get(models.User, user_id) if visible else None
        if row is None:
            raise _user_not_found(request.user_id)
        return user_pb2.GetUserResponse(user=user_to_proto(row))

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ListUsersResponse:
        """Users in creation order, paginated. Platform admin."""
        caller = self._access.caller(context)
        require_admin(caller, "listing users")
        async with self._db.snapshot() as session:
            rows, token = await fetch_page(session, select(models.User), models.User.id, "users", request)
        return user_pb2.ListUsersResponse(users=[user_to_proto(r) for r in rows], next_page_token=token)

    async def SetProjectMember(
        self, request: user_pb2.SetProjectMemberRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.SetProjectMemberResponse:
        """Gives a user a role in a project, or changes it. Owner."""
        caller = self._access.caller(context, request, "project_id")
        if not request.user_id and not request.username:
            raise invalid_argument("user_id or username is required", param="user_id")
        if request.role not in ROLES:
            raise invalid_argument("role must be viewer, editor or owner", param="role")
        async with self._access.project(
            caller, request.project_id, OWNER, kind="transaction", lock=True
        ) as session:
            user = await _member_user(session, request.user_id, request.username)
            row = await session.get(models.ProjectMember, (request.project_id, user.id))
            if row is None:
                row = models.ProjectMember(
                    project_id=request.project_id,
                    user_id=user.id,
                    role=role_name(request.role),
                    create_time=utcnow(),
                )
                session.add(row)
            elif row.role != role_name(request.role):
                await _keep_an_owner(session, caller, row)
                row.role = role_name(request.role)
            await session.flush()
            reply = user_pb2.SetProjectMemberResponse(member=member_to_proto(row, user.username))
        return reply

    async def RemoveProjectMember(
        self, request: user_pb2.RemoveProjectMemberRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.RemoveProjectMemberResponse:
        """Takes a user's role in a project away. Owner."""
        caller = self._access.caller(context, request, "project_id", "user_id")
        async with self._access.project(
            caller, request.project_id, OWNER, kind="transaction", lock=True
        ) as session:
            row = await session.get(models.ProjectMember, (request.project_id, request.user_id))
            if row is None:
                raise not_found(
                    f"user {request.user_id!r} is not a member of project {request.project_id!r}",
                    param="user_id",
                )
            await _keep_an_owner(session, caller, row)
            await session.delete(row)
        return user_pb2.RemoveProjectMemberResponse()

    async def ListProjectMembers(
        self, request: user_pb2.ListProjectMembersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ListProjectMembersResponse:
        """A project's members, in the order they joined. Owner."""
        caller = self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, OWNER) as session:
            rows = (
                await session.execute(
                    select(models.ProjectMember, models.User.username)
                    .join(models.User, models.User.id == models.ProjectMember.user_id)
                    .where(models.ProjectMember.project_id == request.project_id)
                    .order_by(models.ProjectMember.create_time, models.ProjectMember.user_id)
                )
            ).all()
        return user_pb2.ListProjectMembersResponse(members=[member_to_proto(r, name) for r, name in rows])


def binding(db: Database, auth: Authenticator, throttle: LoginThrottle | None = None) -> ServiceBinding:
    """UserService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=UserServicer(db, auth, throttle),
        add_to_server=user_pb2_grpc.add_UserServiceServicer_to_server,
        descriptor=user_pb2.DESCRIPTOR.services_by_name["UserService"],
    )
