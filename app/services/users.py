"""UserService: users, login and project membership.

Login exchanges a username and password for an access token (see `auth.tokens`); it is the one RPC
of the service that takes no token. Platform admins create, list, disable and delete users; the
last enabled platform admin can be neither disabled, demoted nor deleted. A user sees themselves,
and users they share a project with; a platform admin sees everyone. A user changes their own
password with the current one; a platform admin changes anyone's. A password change, a disable,
and a role taken away (a membership removed, the platform-admin flag cleared) bump the user's token
generation: their earlier access tokens are refused at once (`app.authz.Access`). A role lowered
by SetProjectMember applies at once without that (roles are read on every call, not carried in
tokens).
A project's owners (and platform admins) manage its members; a project keeps at least one owner
unless a platform admin removes it. Memberships are not routing state: their transactions leave
the routing revision alone.
"""

from __future__ import annotations

import logging

import grpc
from sqlalchemy import delete, func, select, update
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
from app.validation import (
    check_display_name,
    check_password,
    check_update_mask,
    check_username,
    require,
)
from auth.client_address import client_address
from auth.login_throttle import LoginThrottles
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
    permission_denied,
    unauthenticated,
)
from budrt.grpc_server import ServiceBinding

# GetUser's and ChangePassword's name for the caller.
ME = "me"
# UpdateUser's mask: who may change what. An empty mask changes display_name only (never flags
# left at their defaults in a partial body).
SELF_WRITABLE = ("display_name",)
ADMIN_WRITABLE = ("display_name", "disabled", "platform_admin")

log = logging.getLogger(__name__)


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


def _user_not_found(user_id: str, param: str = "user_id") -> Exception:
    return not_found(f"user {user_id!r} not found", param=param)


async def bump_token_generation(session: AsyncSession, user_id: str) -> None:
    """Revokes every access token the user holds now (see `app.authz.Access.current`)."""
    await session.execute(
        update(models.User)
        .where(models.User.id == user_id)
        .values(token_generation=models.User.token_generation + 1)
    )


async def _keep_an_admin(session: AsyncSession, user: models.User, param: str) -> None:
    """FAILED_PRECONDITION when `user` is the last enabled platform admin (about to be disabled,
    demoted or deleted). The admins' rows are locked first, so two admins cannot take each other
    away concurrently (PostgreSQL; SQLite writers queue anyway)."""
    if not user.platform_admin or user.disabled:
        return
    admins = (
        await session.scalars(
            select(models.User.id)
            .where(models.User.platform_admin.is_(True), models.User.disabled.is_(False))
            .with_for_update()
        )
    ).all()
    if len([a for a in admins if a != user.id]) == 0:
        raise failed_precondition(
            f"user {user.id!r} is the last enabled platform admin; make another user platform admin first",
            reason=Reason.LAST_ADMIN,
            param=param,
        )


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

    def __init__(self, db: Database, auth: Authenticator, throttles: LoginThrottles | None = None) -> None:
        self._db = db
        self._auth = auth
        self._access = Access(db, auth)
        self._throttles = throttles or LoginThrottles()

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LoginResponse:
        """An access token for a username and password; UNAUTHENTICATED (the same for an unknown
        user, a wrong password and a disabled user) otherwise; RESOURCE_EXHAUSTED while repeated
        failures for the username or from the client's address make it wait (see
        `auth.login_throttle`; the attempt is counted before the password is checked). No token
        needed."""
        require(request.username, "username")
        require(request.password, "password")
        # Counted now, before anything awaits: concurrent guesses cannot all pass the check.
        attempt = self._throttles.begin(request.username, client_address(context))
        async with self._db.snapshot() as session:
            user = await session.scalar(select(models.User).where(models.User.username == request.username))
        verified = await verify_password(user.password_hash if user else None, request.password)
        if not verified or user is None or user.disabled:
            # The outcome and the user's id only: never the password, nor a username nobody has
            # (a password typed in the wrong field).
            log.info(
                "login failed",
                extra={"event": "authentication", "outcome": "failed", "user_id": user.id if user else ""},
            )
            raise unauthenticated("wrong username or password", reason=Reason.INVALID_CREDENTIALS)
        attempt.succeeded()
        log.info("login", extra={"event": "authentication", "outcome": "success", "user_id": user.id})
        if needs_rehash(user.password_hash):
            new_hash = await hash_password(request.password)
            async with self._db.transaction() as session:
                row = await session.get(models.User, user.id)
                if row is not None and row.password_hash == user.password_hash:
                    row.password_hash = new_hash
        return user_pb2.LoginResponse(
            access_token=self._auth.issue(user.id, user.platform_admin, user.token_generation),
            token_type=TOKEN_TYPE,
            expires_in=self._auth.lifetime_s,
        )

    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.CreateUserResponse:
        """Creates a user with a unique username. Platform admin."""
        caller = await self._access.caller(context)
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
        caller = await self._access.caller(context)
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
        caller = await self._access.caller(context)
        require_admin(caller, "listing users")
        async with self._db.snapshot() as session:
            rows, token = await fetch_page(session, select(models.User), models.User.id, "users", request)
        return user_pb2.ListUsersResponse(users=[user_to_proto(r) for r in rows], next_page_token=token)

    async def UpdateUser(
        self, request: user_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.UpdateUserResponse:
        """Changes the fields named in update_mask (display_name when empty): display_name (the
        user themselves or a platform admin), disabled and platform_admin (platform admin; the
        last enabled admin stays). Disabling or demoting revokes the user's tokens."""
        caller = await self._access.caller(context, request, "user.id")
        user = request.user
        paths = (
            check_update_mask(request.update_mask, user_pb2.User.DESCRIPTOR, ADMIN_WRITABLE)
            if request.update_mask.paths
            else list(SELF_WRITABLE)
        )
        user_id = caller.user_id if user.id == ME else user.id
        if not caller.admin:
            if user_id != caller.user_id:
                raise _user_not_found(user.id, "user.id")  # as GetUser: others are not shown
            if any(p not in SELF_WRITABLE for p in paths):
                raise permission_denied("only a platform admin may change disabled or platform_admin")
        if "display_name" in paths:
            check_display_name(user.display_name, "user.display_name")
        async with self._db.transaction() as session:
            row = await session.get(models.User, user_id)
            if row is None:
                raise _user_not_found(user.id, "user.id")
            disabling = "disabled" in paths and user.disabled and not row.disabled
            demoting = "platform_admin" in paths and not user.platform_admin and row.platform_admin
            if disabling or demoting:
                await _keep_an_admin(session, row, "user.id")
                await bump_token_generation(session, row.id)
            if "display_name" in paths:
                row.display_name = user.display_name
            if "disabled" in paths:
                row.disabled = user.disabled
            if "platform_admin" in paths:
                row.platform_admin = user.platform_admin
            await session.flush()
            reply = user_pb2.UpdateUserResponse(user=user_to_proto(row))
        return reply

    async def DeleteUser(
        self, request: user_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.DeleteUserResponse:
        """Deletes a user and their memberships (their tokens die with the row). Platform admin;
        the last enabled admin stays."""
        caller = await self._access.caller(context, request, "user_id")
        require_admin(caller, "deleting users")
        async with self._db.transaction() as session:
            row = await session.get(models.User, request.user_id)
            if row is None:
                raise _user_not_found(request.user_id)
            await _keep_an_admin(session, row, "user_id")
            await session.execute(delete(models.ProjectMember).where(models.ProjectMember.user_id == row.id))
            await session.delete(row)
        return user_pb2.DeleteUserResponse()

    async def ChangePassword(
        self, request: user_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ChangePasswordResponse:
        """Sets a new password: one's own ("me" or one's id) with the current password (checked
        and throttled as a login), anyone's as a platform admin. The user's earlier tokens are
        refused from then on (the caller logs in again with the new password)."""
        caller = await self._access.caller(context, request, "user_id")
        user_id = caller.user_id if request.user_id == ME else request.user_id
        own = user_id == caller.user_id
        if not own and not caller.admin:
            raise _user_not_found(request.user_id)  # as GetUser: others are not shown
        if own:
            require(request.current_password, "current_password")
        check_password(request.new_password, "new_password")
        async with self._db.snapshot() as session:
            row = await session.get(models.User, user_id)
        if row is None:
            raise _user_not_found(request.user_id)
        if own:
            attempt = self._throttles.begin(row.username, client_address(context))
            if not await verify_password(row.password_hash, request.current_password):
                raise invalid_argument(
                    "the current password is wrong",
                    reason=Reason.INVALID_CREDENTIALS,
                    param="current_password",
                )
            attempt.succeeded()
        new_hash = await hash_password(request.new_password)
        async with self._db.transaction() as session:
            stored = await session.get(models.User, user_id)
            if stored is None:
                raise _user_not_found(request.user_id)
            stored.password_hash = new_hash
            await bump_token_generation(session, user_id)
        return user_pb2.ChangePasswordResponse()

    async def SetProjectMember(
        self, request: user_pb2.SetProjectMemberRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.SetProjectMemberResponse:
        """Gives a user a role in a project, or changes it. Owner."""
        caller = await self._access.caller(context, request, "project_id")
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
        caller = await self._access.caller(context, request, "project_id", "user_id")
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
            await bump_token_generation(session, request.user_id)  # a role taken away
        return user_pb2.RemoveProjectMemberResponse()

    async def ListProjectMembers(
        self, request: user_pb2.ListProjectMembersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ListProjectMembersResponse:
        """A project's members, in the order they joined. Owner."""
        caller = await self._access.caller(context, request, "project_id")
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


def binding(db: Database, auth: Authenticator, throttles: LoginThrottles | None = None) -> ServiceBinding:
    """UserService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=UserServicer(db, auth, throttles),
        add_to_server=user_pb2_grpc.add_UserServiceServicer_to_server,
        descriptor=user_pb2.DESCRIPTOR.services_by_name["UserService"],
    )
