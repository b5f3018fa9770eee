"""UserService and access tokens over gRPC on SQLite and PostgreSQL: login, token checks on every
management RPC, the bootstrapped platform admin, users."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import jwt
import pytest
from argon2 import PasswordHasher
from google.protobuf import message_factory
from sqlalchemy import delete, select

from app.bootstrap import BootstrapError
from app.db import models
from app.server import RunningApp
from bud.app.v1 import project_pb2, usage_pb2
from bud.auth.v1 import routing_pb2, user_pb2

JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes"  # the conftest's settings
ADMIN_PASSWORD = "test-admin-password"
# The RPCs that take no user token: gateways call the first two on the internal network.
NO_TOKEN = {
    "bud.auth.v1.RoutingService/WatchRouting",
    "bud.app.v1.UsageService/RecordUsage",
    "bud.auth.v1.UserService/Login",
}


def _printed(out: str, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith(f"{name}=")]


def _token(secret: str = JWT_SECRET, **claims: Any) -> str:
    now = int(time.time())
    claims = {"sub": "usr_x", "admin": True, "iat": now, "exp": now + 60, "jti": "j", **claims}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


async def test_login(app: RunningApp, clients: Any, helpers: Any) -> None:
    client = clients(app)
    reply = await client.users.Login(user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
    assert reply.token_type == "Bearer" and reply.expires_in == 15 * 60
    claims = jwt.decode(reply.access_token, JWT_SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "admin", "iat", "exp", "jti"}
    assert claims["admin"] is True and claims["exp"] - claims["iat"] == 15 * 60
    assert abs(claims["iat"] - time.time()) < 60

    client.bearer.token = reply.access_token
    me = (await client.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user
    assert me.id == claims["sub"] and me.username == "admin" and me.platform_admin
    assert me.create_time.seconds > 0
    assert (await client.users.GetUser(user_pb2.GetUserRequest(user_id=me.id))).user == me
    again = await client.users.Login(user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
    assert jwt.decode(again.access_token, JWT_SECRET, algorithms=["HS256"])["jti"] != claims["jti"]

    # Wrong password and unknown user: the same answer.
    for username, password in (("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)):
        err = await helpers.expect_error(
            client.users.Login(user_pb2.LoginRequest(username=username, password=password)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert (err.reason, err.message) == ("INVALID_CREDENTIALS", "wrong username or password")
    await helpers.expect_error(
        client.users.Login(user_pb2.LoginRequest(username="admin")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "password",
    )


async def test_repeated_failed_logins_make_the_user_wait(app: RunningApp, clients: Any, helpers: Any) -> None:
    client = clients(app)
    for _ in range(5):  # the free attempts
        await helpers.expect_error(
            client.users.Login(user_pb2.LoginRequest(username="admin", password="guess-guess")),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    # Then even the right password waits (a guesser learns nothing), for this username only.
    err = await helpers.expect_error(
        client.users.Login(user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert err.reason == "TOO_MANY_LOGIN_ATTEMPTS" and "try again in 1 s" in err.message
    await helpers.expect_error(
        client.users.Login(user_pb2.LoginRequest(username="nobody", password="guess-guess")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await asyncio.sleep(1.1)
    assert (
        await client.users.Login(user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
    ).access_token
    # A success clears the count.
    await helpers.expect_error(
        client.users.Login(user_pb2.LoginRequest(username="admin", password="guess-guess")),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_login_rehashes_old_hashes(app: RunningApp, clients: Any) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(ADMIN_PASSWORD)
    async with app.db.transaction() as session:
        user = await session.scalar(select(models.User).where(models.User.username == "admin"))
        assert user is not None
        user.password_hash = old
    await clients(app).login()  # the old hash still verifies...
    async with app.db.snapshot() as session:
        stored = await session.scalar(
            select(models.User.password_hash).where(models.User.username == "admin")
        )
    assert stored != old and not PasswordHasher().check_needs_rehash(stored)  # ...and is replaced
    await clients(app).login()


async def test_bad_tokens_are_refused(app: RunningApp, clients: Any, helpers: Any) -> None:
    admin_id = (
        await (await clients(app).login()).users.GetUser(user_pb2.GetUserRequest(user_id="me"))
    ).user.id
    request = project_pb2.ListProjectsRequest()
    valid = _token(sub=admin_id)
    assert (await clients(app, valid).projects.ListProjects(request)).projects  # the control

    now = int(time.time())
    cases = {
        "": "UNAUTHENTICATED",  # no authorization metadata at all
        _token(sub=admin_id, iat=now - 3600, exp=now - 60): "TOKEN_EXPIRED",
        _token(secret="another-secret-of-at-least-32-bytes", sub=admin_id): "INVALID_TOKEN",
        _token(sub=admin_id, jti=None): "INVALID_TOKEN",  # a required claim missing
        _token(sub=admin_id, admin="yes"): "INVALID_TOKEN",
        jwt.encode(
            {"sub": admin_id, "admin": True, "iat": now, "exp": now + 60, "jti": "j"}, None, "none"
        ): "INVALID_TOKEN",
        "not-a-jwt": "INVALID_TOKEN",
    }
    for token, reason in cases.items():
        err = await helpers.expect_error(
            clients(app, token).projects.ListProjects(request), grpc.StatusCode.UNAUTHENTICATED
        )
        assert err.reason == reason, (token, err)
    for metadata in ((("authorization", f"Basic {valid}"),), (("authorization", "Bearer "),)):
        err = await helpers.expect_error(
            clients(app).projects.ListProjects(request, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
        )
        assert err.reason == "INVALID_TOKEN"


async def test_every_management_rpc_needs_a_token(app: RunningApp, clients: Any, helpers: Any) -> None:
    """Each RPC the app hosts, called with an empty request and no token, is UNAUTHENTICATED —
    before any validation — except the internal ones and Login."""
    channel = clients(app).channel
    checked = []
    for binding in app.server.bindings:
        for method in binding.descriptor.methods:
            path = f"{binding.descriptor.full_name}/{method.name}"
            if path in NO_TOKEN:
                continue
            assert not method.server_streaming, path
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            call = channel.unary_unary(
                f"/{path}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            await helpers.expect_error(call(request_class()), grpc.StatusCode.UNAUTHENTICATED)
            checked.append(path)
    assert len(checked) == 5 + 5 + 6 + 1 + 6  # projects, deployments, keys, QueryUsage, users

    # The internal RPCs answer without a token.
    anonymous = clients(app)
    assert (await anonymous.usage.RecordUsage(usage_pb2.RecordUsageRequest())).stored == 0
    watch = anonymous.routing.WatchRouting(routing_pb2.WatchRoutingRequest())
    assert (await watch.read()).reset
    watch.cancel()


async def test_generated_admin_password_is_printed_once(
    capsys: Any, start: Any, clients: Any, helpers: Any
) -> None:
    first = await start(admin_password="")
    lines = capsys.readouterr().out.splitlines()
    (password,) = _printed("\n".join(lines), "BUD_ADMIN_PASSWORD")
    (secret,) = _printed("\n".join(lines), "OPENAI_API_KEY")
    # On its own line, right after the key's, each announced by a line of its own.
    at = lines.index(f"BUD_ADMIN_PASSWORD={password}")
    assert lines[at - 2] == f"OPENAI_API_KEY={secret}" and "shown this once" in lines[at - 1]
    assert len(password) >= 32
    assert first.admin is not None and first.admin.generated and password not in repr(first.admin)
    client = await clients(first).login("admin", password)
    assert (await client.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.platform_admin

    async with first.db.snapshot() as session:
        (user,) = (await session.scalars(select(models.User))).all()
    assert user.password_hash.startswith("$argon2id$") and password not in user.password_hash

    await first.stop()
    second = await start(admin_password="")
    assert capsys.readouterr().out == "" and second.admin is None
    await clients(second).login("admin", password)  # the same password still works


async def test_admin_password_from_settings_is_not_printed(
    capsys: Any, app: RunningApp, clients: Any
) -> None:
    out = capsys.readouterr().out
    assert _printed(out, "BUD_ADMIN_PASSWORD") == [] and ADMIN_PASSWORD not in out
    assert app.admin is not None and not app.admin.generated
    await clients(app).login("admin", ADMIN_PASSWORD)


async def test_admin_created_on_upgrade_from_a_database_without_users(
    capsys: Any, start: Any, clients: Any
) -> None:
    first = await start()
    async with first.db.transaction() as session:  # as bootstrapped by a version without users
        await session.execute(delete(models.ProjectMember))
        await session.execute(delete(models.User))
    await first.stop()
    capsys.readouterr()
    second = await start(admin_username="root", admin_password="")
    out = capsys.readouterr().out
    assert _printed(out, "OPENAI_API_KEY") == []  # the defaults are not created again
    (password,) = _printed(out, "BUD_ADMIN_PASSWORD")
    assert second.bootstrapped is None and second.admin is not None
    await clients(second).login("root", password)


async def test_invalid_admin_settings_refuse_to_start(capsys: Any, start: Any) -> None:
    for overrides in ({"admin_username": "Not Valid"}, {"admin_password": "short"}):
        with pytest.raises(BootstrapError):
            await start(**overrides)
    assert capsys.readouterr().out == ""
    app = await start()
    assert app.admin is not None and app.bootstrapped is not None


async def test_users(app: RunningApp, stubs: Any, clients: Any, helpers: Any) -> None:
    created = (
        await stubs.users.CreateUser(
            user_pb2.CreateUserRequest(
                username="alice@example.com", password="alice-password", display_name="Alice"
            )
        )
    ).user
    assert created.id.startswith("usr_") and created.username == "alice@example.com"
    assert created.display_name == "Alice" and not created.platform_admin and created.create_time.seconds > 0
    assert "alice-password" not in str(created)
    await helpers.expect_error(
        stubs.users.CreateUser(
            user_pb2.CreateUserRequest(username="alice@example.com", password="another-pw")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "username",
    )
    for request, param in (
        (user_pb2.CreateUserRequest(username="Alice", password="long-enough"), "username"),
        (user_pb2.CreateUserRequest(username="", password="long-enough"), "username"),
        (user_pb2.CreateUserRequest(username="bob", password="short"), "password"),
        (
            user_pb2.CreateUserRequest(username="bob", password="long-enough", display_name="x" * 201),
            "display_name",
        ),
    ):
        await helpers.expect_error(stubs.users.CreateUser(request), grpc.StatusCode.INVALID_ARGUMENT, param)

    alice = await clients(app).login("alice@example.com", "alice-password")
    assert (await alice.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user == created
    # Users are for platform admins to create and list.
    await helpers.expect_error(
        alice.users.CreateUser(user_pb2.CreateUserRequest(username="mallory", password="long-enough")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await helpers.expect_error(
        alice.users.ListUsers(user_pb2.ListUsersRequest()), grpc.StatusCode.PERMISSION_DENIED
    )
    admin_id = (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id
    await helpers.expect_error(
        alice.users.GetUser(user_pb2.GetUserRequest(user_id=admin_id)), grpc.StatusCode.NOT_FOUND, "user_id"
    )
    assert (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id=created.id))).user == created

    # A second admin, and a page through everyone.
    root = (
        await stubs.users.CreateUser(
            user_pb2.CreateUserRequest(username="root", password="root-password", platform_admin=True)
        )
    ).user
    root_client = await clients(app).login("root", "root-password")
    assert (await root_client.users.GetUser(user_pb2.GetUserRequest(user_id=created.id))).user == created
    seen, token = [], ""
    while True:
        page = await stubs.users.ListUsers(user_pb2.ListUsersRequest(page_size=2, page_token=token))
        seen += [u.username for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["admin", "alice@example.com", "root"] and root.platform_admin
