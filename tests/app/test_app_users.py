"""UserService and access tokens over gRPC on SQLite and PostgreSQL: login and its throttles
(concurrent guesses, spraying from one address, over gRPC and REST), token checks on every
management RPC, tokens revoked by a password change, a disable or a deletion, the bootstrapped
platform admin (and the last one kept), users, the upgrade from 0002."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from google.protobuf import field_mask_pb2, message_factory
from sqlalchemy import delete, select
from sqlalchemy import text as sa_text

from app.bootstrap import BootstrapError
from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import RunningApp
from app.services.users import UserServicer
from auth.login_throttle import LoginThrottle, LoginThrottles
from bud.app.v1 import project_pb2, usage_pb2
from bud.auth.v1 import routing_pb2, user_pb2
from budrt.grpc_server import service_channel
from gateway.backends import RemoteBackend
from gateway.transcoder import FrontedService, Transcoder

JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes"  # the conftest's settings
ADMIN_PASSWORD = "test-admin-password"
# The RPCs that take no user token: gateways call the first two on the internal network.
NO_TOKEN = {
    "bud.auth.v1.RoutingService/WatchRouting",
    # The gateways' load reports and wake-ups (gateways only, by service identity).
    "bud.auth.v1.RoutingService/ReportLoad",
    "bud.auth.v1.RoutingService/WakeDeployment",
    "bud.prompt.v1.PromptService/WatchPrompts",
    "bud.prompt.v1.PromptService/FetchPromptVersion",
    "bud.app.v1.UsageService/RecordUsage",
    "bud.auth.v1.UserService/Login",
    # An engine's announcement of itself: by its service identity and certificate, no user.
    "bud.app.v1.EngineRegistryService/AnnounceEngine",
    # Stored responses: internal (gateways, by service identity), the project named by the gateway.
    "bud.app.v1.ResponseStoreService/StoreResponses",
    "bud.app.v1.ResponseStoreService/GetStoredResponse",
    "bud.app.v1.ResponseStoreService/DeleteStoredResponse",
    "bud.app.v1.ResponseStoreService/GetConversation",
}


def _printed(out: str, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith(f"{name}=")]


def _token(secret: str = JWT_SECRET, **claims: Any) -> str:
    now = int(time.time())
    claims = {"sub": "usr_x", "admin": True, "gen": 0, "iat": now, "exp": now + 60, "jti": "j", **claims}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


async def test_login(app: RunningApp, clients: Any, helpers: Any) -> None:
    client = clients(app)
    reply = await client.users.Login(user_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
    assert reply.token_type == "Bearer" and reply.expires_in == 15 * 60
    claims = jwt.decode(reply.access_token, JWT_SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "admin", "gen", "iat", "exp", "jti"} and claims["gen"] == 0
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
            {"sub": admin_id, "admin": True, "gen": 0, "iat": now, "exp": now + 60, "jti": "j"}, None, "none"
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


def _management_calls(
    app: RunningApp, channel: grpc.aio.Channel, token: str = ""
) -> list[tuple[str, Any, Any]]:
    """(path, callable, request class) of every RPC the app hosts that needs a user's token
    (`token`: sent on the server-streaming ones, which the channel's unary interceptor skips)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    calls = []
    for binding in app.server.bindings:
        for method in binding.descriptor.methods:
            path = f"{binding.descriptor.full_name}/{method.name}"
            if path in NO_TOKEN:
                continue
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            if method.server_streaming:  # its first read answers the refusal
                stream = channel.unary_stream(
                    f"/{path}",
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString,
                )
                calls.append(
                    (path, lambda request, s=stream: s(request, metadata=metadata).read(), request_class)
                )
                continue
            call = channel.unary_unary(
                f"/{path}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            calls.append((path, call, request_class))
    return calls


async def test_every_management_rpc_needs_a_token(app: RunningApp, clients: Any, helpers: Any) -> None:
    """Each RPC the app hosts, called with an empty request and no token, is UNAUTHENTICATED —
    before any validation — except the internal ones and Login."""
    checked = []
    for path, call, request_class in _management_calls(app, clients(app).channel):
        await helpers.expect_error(call(request_class()), grpc.StatusCode.UNAUTHENTICATED)
        checked.append(path)
    assert (
        len(checked) == 5 + 6 + 6 + 1 + 5 + 9 + 4 + 20
    )  # projects, deployments (ListScalingEvents too), keys, QueryUsage, budgets, users, engines,
    # prompts (StreamRunPrompt, server-streaming, and ListPromptIntegrations too)

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


def _login_request(username: str, password: str) -> user_pb2.LoginRequest:
    return user_pb2.LoginRequest(username=username, password=password)


async def _answers(calls: list[Any]) -> list[str]:
    """The status names of concurrent calls ("OK" for a success)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in results]


def _long_waits(app: RunningApp) -> None:
    """Gives the app's Login a first wait of a minute (instead of 1 s), so that a burst of calls
    spread over a few seconds on a busy machine cannot outlast it: the counts are exact."""
    (servicer,) = [b.servicer for b in app.server.bindings if isinstance(b.servicer, UserServicer)]
    servicer._throttles = LoginThrottles(
        LoginThrottle(base_s=60.0), LoginThrottle(free=20, base_s=60.0, forget_s=900.0, what="this address")
    )


async def test_concurrent_wrong_logins_are_throttled_like_sequential_ones(
    app: RunningApp, clients: Any
) -> None:
    """The race: 40 wrong passwords for one user at once used to pass the check together (it ran
    before the slow hash, the count after) and all get 401. Each attempt is counted as it starts."""
    _long_waits(app)
    client = clients(app)
    answers = await _answers(
        [client.users.Login(_login_request("admin", f"guess-{i:03}")) for i in range(40)]
    )
    assert answers.count("UNAUTHENTICATED") == 5 and answers.count("RESOURCE_EXHAUSTED") == 35, answers
    # The right password waits too (a guesser learns nothing).
    assert await _answers([client.users.Login(_login_request("admin", ADMIN_PASSWORD))]) == [
        "RESOURCE_EXHAUSTED"
    ]


async def test_spraying_many_usernames_from_one_address_is_throttled(
    app: RunningApp, clients: Any, helpers: Any
) -> None:
    """One password tried over many usernames from one address: the per-username throttle never
    sees a second failure, the per-address one stops it after 20."""
    _long_waits(app)
    client = clients(app)
    answers = await _answers(
        [client.users.Login(_login_request(f"user{i}", "Summer2026!")) for i in range(30)]
    )
    assert answers.count("UNAUTHENTICATED") == 20 and answers.count("RESOURCE_EXHAUSTED") == 10, answers
    err = await helpers.expect_error(
        client.users.Login(_login_request("admin", ADMIN_PASSWORD)), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert err.reason == "TOO_MANY_LOGIN_ATTEMPTS" and "this address" in err.message


async def test_rest_logins_are_throttled_per_http_client_address(app: RunningApp) -> None:
    """Through a gateway on the app's host, the address is the HTTP client's (the gateway sends
    it as x-forwarded-for; the app trusts it from a loopback peer): one sprayer is throttled, a
    client at another address is not, and a client's own X-Forwarded-For header changes nothing."""
    _long_waits(app)
    descriptor = user_pb2.DESCRIPTOR.services_by_name["UserService"]
    channel = service_channel(app.address)
    gateway = Transcoder([FrontedService(descriptor, RemoteBackend(channel))])

    def http_client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=gateway, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://gateway")

    try:
        async with http_client("203.0.113.9") as sprayer, http_client("198.51.100.7") as other:
            statuses = []
            for i in range(22):
                r = await sprayer.post(
                    "/v1/auth/login",
                    json={"username": f"user{i}", "password": "Summer2026!"},
                    headers={"x-forwarded-for": f"192.0.2.{i}"},  # a forged header: dropped
                )
                statuses.append(r.status_code)
            assert statuses == [401] * 20 + [429] * 2, statuses
            r = await other.post("/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            # The new RPCs' REST faces: one's own password ("me"), a user's flags.
            auth = {"authorization": f"Bearer {r.json()['access_token']}"}
            r = await other.post(
                "/v1/users/me:changePassword",
                json={"current_password": ADMIN_PASSWORD, "new_password": "short"},
                headers=auth,
            )
            assert r.status_code == 400 and "new_password" in r.text, r.text
            r = await other.patch("/v1/users/me?update_mask=disabled", json={"disabled": True}, headers=auth)
            assert r.status_code == 400 and r.json()["details"][0]["reason"] == "LAST_ADMIN", r.text
    finally:
        await channel.close()


async def _user_client(
    app: RunningApp, admin: Any, clients: Any, username: str, **fields: Any
) -> tuple[str, Any]:
    """Creates a user; returns its id and clients logged in as it."""
    password = f"{username}-password"
    user = (
        await admin.users.CreateUser(
            user_pb2.CreateUserRequest(username=username, password=password, **fields)
        )
    ).user
    return user.id, await clients(app).login(username, password)


async def _revoked(client: Any, helpers: Any) -> None:
    err = await helpers.expect_error(
        client.users.GetUser(user_pb2.GetUserRequest(user_id="me")), grpc.StatusCode.UNAUTHENTICATED
    )
    assert err.reason == "INVALID_TOKEN" and "revoked" in err.message


async def test_change_password_revokes_earlier_tokens_at_once(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    alice_id, alice = await _user_client(app, stubs, clients, "alice")
    second_session = await clients(app).login("alice", "alice-password")
    for request, code, param in (
        (
            user_pb2.ChangePasswordRequest(user_id="me", new_password="new-alice-pw"),
            "INVALID_ARGUMENT",
            "current_password",
        ),
        (
            user_pb2.ChangePasswordRequest(
                user_id="me", current_password="alice-password", new_password="short"
            ),
            "INVALID_ARGUMENT",
            "new_password",
        ),
        (
            user_pb2.ChangePasswordRequest(
                user_id="me", current_password="wrong-pw", new_password="new-alice-pw"
            ),
            "INVALID_ARGUMENT",
            "current_password",
        ),
        # Another user's password is for admins only; others are not even shown.
        (
            user_pb2.ChangePasswordRequest(
                user_id=(await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id,
                current_password="x",
                new_password="new-alice-pw",
            ),
            "NOT_FOUND",
            "user_id",
        ),
    ):
        await helpers.expect_error(alice.users.ChangePassword(request), getattr(grpc.StatusCode, code), param)
    await alice.users.GetUser(user_pb2.GetUserRequest(user_id="me"))  # nothing changed so far

    await alice.users.ChangePassword(
        user_pb2.ChangePasswordRequest(
            user_id="me", current_password="alice-password", new_password="new-alice-pw"
        )
    )
    await _revoked(alice, helpers)  # the token that made the change
    await _revoked(second_session, helpers)  # and every other one issued before
    await helpers.expect_error(
        clients(app).users.Login(_login_request("alice", "alice-password")), grpc.StatusCode.UNAUTHENTICATED
    )
    alice = await clients(app).login("alice", "new-alice-pw")
    assert (await alice.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id == alice_id

    # An admin sets anyone's password without the current one.
    await stubs.users.ChangePassword(
        user_pb2.ChangePasswordRequest(user_id=alice_id, new_password="reset-by-admin")
    )
    await _revoked(alice, helpers)
    await clients(app).login("alice", "reset-by-admin")
    await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))  # the admin's own token stands
    await helpers.expect_error(
        stubs.users.ChangePassword(
            user_pb2.ChangePasswordRequest(user_id="usr_nope", new_password="long-enough")
        ),
        grpc.StatusCode.NOT_FOUND,
        "user_id",
    )


async def test_a_revoked_token_is_refused_by_every_management_rpc(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    root_id, root = await _user_client(app, stubs, clients, "root", platform_admin=True)
    token = root.bearer.token
    await stubs.users.ChangePassword(
        user_pb2.ChangePasswordRequest(user_id=root_id, new_password="changed-pw")
    )
    checked = 0
    for path, call, request_class in _management_calls(app, clients(app, token).channel, token):
        err = await helpers.expect_error(call(request_class()), grpc.StatusCode.UNAUTHENTICATED)
        assert err.reason == "INVALID_TOKEN", path
        checked += 1
    assert checked == 36 + 20  # ListScalingEvents (31), budgets (5), and PromptService


async def test_disable_update_and_delete_users(
    app: RunningApp, stubs: Any, clients: Any, helpers: Any
) -> None:
    bob_id, bob = await _user_client(app, stubs, clients, "bob")
    admin_id = (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id

    # A user changes their own display name (the default mask), nothing else.
    renamed = await bob.users.UpdateUser(
        user_pb2.UpdateUserRequest(user=user_pb2.User(id="me", display_name="Bob B.", disabled=False))
    )
    assert renamed.user.display_name == "Bob B." and renamed.user.id == bob_id
    for request, code, param in (
        (
            user_pb2.UpdateUserRequest(
                user=user_pb2.User(id=bob_id, platform_admin=True),
                update_mask=field_mask_pb2.FieldMask(paths=["platform_admin"]),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
        (
            user_pb2.UpdateUserRequest(user=user_pb2.User(id=admin_id, display_name="pwned")),
            grpc.StatusCode.NOT_FOUND,
            "user.id",
        ),
        (
            user_pb2.UpdateUserRequest(
                user=user_pb2.User(id=bob_id), update_mask=field_mask_pb2.FieldMask(paths=["username"])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        ),
        (
            user_pb2.UpdateUserRequest(user=user_pb2.User(id="me", display_name="x" * 201)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "user.display_name",
        ),
    ):
        await helpers.expect_error(bob.users.UpdateUser(request), code, param)
    await helpers.expect_error(
        bob.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=bob_id)), grpc.StatusCode.PERMISSION_DENIED
    )

    # Disabled: the token is refused at once, the right password no longer logs in.
    disable = field_mask_pb2.FieldMask(paths=["disabled"])
    reply = await stubs.users.UpdateUser(
        user_pb2.UpdateUserRequest(user=user_pb2.User(id=bob_id, disabled=True), update_mask=disable)
    )
    assert reply.user.disabled and reply.user.display_name == "Bob B."
    await _revoked(bob, helpers)
    err = await helpers.expect_error(
        clients(app).users.Login(_login_request("bob", "bob-password")), grpc.StatusCode.UNAUTHENTICATED
    )
    assert err.reason == "INVALID_CREDENTIALS"  # the same answer as a wrong password
    assert (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id=bob_id))).user.disabled
    await stubs.users.UpdateUser(
        user_pb2.UpdateUserRequest(user=user_pb2.User(id=bob_id, disabled=False), update_mask=disable)
    )
    bob = await clients(app).login("bob", "bob-password")

    # Deleted: gone, with their memberships; their token dies with them.
    project = (
        await bob.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="bobs"))
        )
    ).project
    await stubs.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=bob_id))
    await helpers.expect_error(
        bob.users.GetUser(user_pb2.GetUserRequest(user_id="me")), grpc.StatusCode.UNAUTHENTICATED
    )
    await helpers.expect_error(
        stubs.users.GetUser(user_pb2.GetUserRequest(user_id=bob_id)), grpc.StatusCode.NOT_FOUND, "user_id"
    )
    members = await stubs.users.ListProjectMembers(user_pb2.ListProjectMembersRequest(project_id=project.id))
    assert list(members.members) == []
    await helpers.expect_error(
        stubs.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=bob_id)),
        grpc.StatusCode.NOT_FOUND,
        "user_id",
    )
    await helpers.expect_error(
        clients(app).users.Login(_login_request("bob", "bob-password")), grpc.StatusCode.UNAUTHENTICATED
    )


async def test_the_last_platform_admin_stays(app: RunningApp, stubs: Any, clients: Any, helpers: Any) -> None:
    admin_id = (await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user.id
    refusals = (
        stubs.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=admin_id)),
        stubs.users.UpdateUser(
            user_pb2.UpdateUserRequest(
                user=user_pb2.User(id=admin_id, disabled=True),
                update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
            )
        ),
        stubs.users.UpdateUser(
            user_pb2.UpdateUserRequest(
                user=user_pb2.User(id="me", platform_admin=False),
                update_mask=field_mask_pb2.FieldMask(paths=["platform_admin"]),
            )
        ),
    )
    for call in refusals:
        err = await helpers.expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
        assert err.reason == "LAST_ADMIN"
    await stubs.users.GetUser(user_pb2.GetUserRequest(user_id="me"))  # untouched, token included

    # With a second admin, the first may go; a demoted admin's token is refused at once.
    root_id, root = await _user_client(app, stubs, clients, "root", platform_admin=True)
    await root.users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=admin_id, platform_admin=False),
            update_mask=field_mask_pb2.FieldMask(paths=["platform_admin"]),
        )
    )
    await _revoked(stubs, helpers)
    demoted = await clients(app).login()
    await helpers.expect_error(
        demoted.users.ListUsers(user_pb2.ListUsersRequest()), grpc.StatusCode.PERMISSION_DENIED
    )
    err = await helpers.expect_error(
        root.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=root_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "LAST_ADMIN"
    await root.users.DeleteUser(user_pb2.DeleteUserRequest(user_id=admin_id))
    assert [u.username for u in (await root.users.ListUsers(user_pb2.ListUsersRequest())).users] == ["root"]


async def test_upgrade_from_0002_keeps_the_users(database_url: str, start: Any, clients: Any) -> None:
    """A database at revision 0002 with users in it: upgraded at start, its users keep their
    passwords and ids, enabled, at token generation 0."""
    db = Database(database_url)
    try:
        await upgrade_database(db, "0002")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                sa_text(
                    "INSERT INTO users (id, username, display_name, password_hash, platform_admin, create_time) "
                    "VALUES ('usr_old', 'carol', 'Carol', :hash, true, :now)"
                ),
                {
                    "hash": PasswordHasher().hash("carol-password"),
                    "now": datetime.now(UTC).replace(tzinfo=None),
                },
            )
    finally:
        await db.dispose()
    app = await start()
    assert app.admin is None  # the database has a user: no admin bootstrapped
    async with app.db.snapshot() as session:
        (row,) = (await session.scalars(select(models.User))).all()
    assert (row.id, row.username, row.display_name, row.platform_admin) == ("usr_old", "carol", "Carol", True)
    assert (row.disabled, row.token_generation) == (False, 0)
    carol = await clients(app).login("carol", "carol-password")
    me = (await carol.users.GetUser(user_pb2.GetUserRequest(user_id="me"))).user
    assert me.id == "usr_old" and me.platform_admin and not me.disabled
