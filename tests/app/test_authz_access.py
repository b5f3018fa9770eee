"""`app.authz.Access`, the prologue of every management RPC, directly: its order (caller, then
required fields), the caller's token checked against their user's row, and the role check in the RPC's transaction on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy import delete, update

from app.authz import Access
from app.convert import role_name
from app.db import models
from app.db.migrate import upgrade_database
from app.db.models import utcnow
from app.db.session import Database
from app.services.projects import create_project
from app.services.users import create_user
from auth.roles import EDITOR, OWNER, VIEWER
from auth.tokens import Authenticator, Caller
from bud.app.v1 import deployment_pb2
from bud.auth.v1 import auth_pb2
from budrt.errors import ServiceError

SECRET = "a-test-jwt-secret-of-at-least-32-bytes"


class Context:
    def __init__(self, token: str | None) -> None:
        self._metadata = () if token is None else (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


async def test_caller_comes_before_the_required_fields(db: Database) -> None:
    auth = Authenticator(SECRET)
    access = Access(db, auth)
    async with db.transaction() as session:
        user_id = (await create_user(session, "olga", "hash")).id
    empty = auth_pb2.UpdateApiKeyRequest()
    with pytest.raises(ServiceError) as refused:
        await access.caller(Context(None), empty, "api_key.id", "api_key.project_id")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    token = auth.issue(user_id, False)
    with pytest.raises(ServiceError) as refused:
        await access.caller(Context(token), empty, "api_key.id", "api_key.project_id")
    assert (refused.value.code, refused.value.param) == (grpc.StatusCode.INVALID_ARGUMENT, "api_key.id")
    half = auth_pb2.UpdateApiKeyRequest(api_key=auth_pb2.ApiKey(id="key_1"))
    with pytest.raises(ServiceError) as refused:
        await access.caller(Context(token), half, "api_key.id", "api_key.project_id")
    assert refused.value.param == "api_key.project_id"
    whole = deployment_pb2.GetDeploymentRequest(project_id="prj_1", deployment_id="dep_1")
    assert await access.caller(Context(token), whole, "project_id", "deployment_id") == Caller(user_id, False)
    assert await access.caller(Context(token)) == Caller(user_id, False)


async def test_caller_is_checked_against_the_users_row(db: Database) -> None:
    """A token is refused, before the required fields, once its user is gone, disabled or at a
    newer token generation; the admin flag is the row's, not the token's."""
    auth = Authenticator(SECRET)
    access = Access(db, auth)
    async with db.transaction() as session:
        user = await create_user(session, "olga", "hash")
    token = auth.issue(user.id, True)  # says admin; the row says otherwise
    assert await access.caller(Context(token)) == Caller(user.id, False, 0)
    empty = auth_pb2.UpdateApiKeyRequest()
    for change in ({"token_generation": 1}, {"token_generation": 0, "disabled": True}, None):
        async with db.transaction() as session:
            if change is None:
                await session.execute(delete(models.User).where(models.User.id == user.id))
            else:
                await session.execute(update(models.User).where(models.User.id == user.id).values(**change))
        with pytest.raises(ServiceError) as refused:
            await access.caller(Context(token), empty, "api_key.id")
        assert (refused.value.code, refused.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_TOKEN",
        )
    with pytest.raises(ServiceError) as refused:
        await access.caller(Context(auth.issue("usr_nobody", False)))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade_database(database)
    yield database
    await database.dispose()


async def test_project_checks_the_role_in_the_transaction(db: Database) -> None:
    async with db.transaction() as session:
        owner = await create_user(session, "olga", "hash")
        viewer = await create_user(session, "vic", "hash")
        outsider = await create_user(session, "oscar", "hash")
        project = await create_project(session, "team", owner_id=owner.id)
        session.add(
            models.ProjectMember(
                project_id=project.id, user_id=viewer.id, role=role_name(VIEWER), create_time=utcnow()
            )
        )
    access = Access(db, Authenticator(SECRET))

    async def enter(caller: Caller, role: int, project_id: str = project.id, **options: Any) -> None:
        async with access.project(caller, project_id, role, **options) as session:
            assert session is not None

    for caller, role in (
        (Caller(owner.id, False), OWNER),
        (Caller(viewer.id, False), VIEWER),
        (Caller(outsider.id, True), OWNER),
    ):  # a platform admin, member or not
        await enter(caller, role)
    await enter(Caller(owner.id, False), EDITOR, kind="transaction", lock=True)
    before = await db.revision()
    await enter(Caller(owner.id, False), EDITOR, kind="mutation")
    assert await db.revision() == before + 1  # a mutation bumps the routing revision
    await enter(Caller(owner.id, False), EDITOR)
    assert await db.revision() == before + 1  # a snapshot does not

    cases = (
        (Caller(viewer.id, False), EDITOR, project.id, {}, grpc.StatusCode.PERMISSION_DENIED, ""),
        (Caller(outsider.id, False), VIEWER, project.id, {}, grpc.StatusCode.NOT_FOUND, "project_id"),
        (Caller(outsider.id, False), VIEWER, "prj_nope", {}, grpc.StatusCode.NOT_FOUND, "project_id"),
        (
            Caller(outsider.id, False),
            VIEWER,
            project.id,
            {"param": "api_key.project_id"},
            grpc.StatusCode.NOT_FOUND,
            "api_key.project_id",
        ),
        (
            Caller(outsider.id, True),
            VIEWER,
            "prj_nope",
            {"param": "project.id"},
            grpc.StatusCode.NOT_FOUND,
            "project.id",
        ),
    )
    for caller, role, project_id, options, code, param in cases:
        with pytest.raises(ServiceError) as refused:
            await enter(caller, role, project_id, **options)
        assert (refused.value.code, refused.value.param) == (code, param), (caller, role, project_id)
    # The refusal of an outsider says exactly what a missing project says.
    with pytest.raises(ServiceError) as hidden:
        await enter(Caller(outsider.id, False), VIEWER, project.id)
    with pytest.raises(ServiceError) as missing:
        await enter(Caller(outsider.id, True), VIEWER, project.id.replace("prj", "prx"))
    assert hidden.value.message.replace(project.id, "X") == missing.value.message.replace(
        project.id.replace("prj", "prx"), "X"
    )
