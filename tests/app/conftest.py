"""Fixtures of the app-service tests: a real gRPC server on a free loopback port, in process, on
a real database — every database test runs on SQLite and on a throwaway PostgreSQL — and the
instant engine (`tests/support/instant_engine.py`) standing in for the engine process the
reconciler drives.

Management RPCs need a user's access token: a `Stubs` sends the token its `login` got (the
bootstrapped admin's by default) with every unary call; `stubs` is logged in as the admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from app.server import RunningApp, start_app
from app.settings import AppSettings as Settings
from bud.app.v1 import (
    deployment_pb2,
    deployment_pb2_grpc,
    engine_registry_pb2,
    engine_registry_pb2_grpc,
    project_pb2_grpc,
    usage_pb2_grpc,
)
from bud.auth.v1 import auth_pb2_grpc, routing_pb2_grpc, user_pb2, user_pb2_grpc
from budrt.errors import ServiceError
from budrt.grpc_server import GrpcServer, service_channel
from tests.support.instant_engine import InstantEngine, serve_instant_engine
from tests.support.postgres import PostgresCluster, postgres_cluster  # noqa: F401  (fixture)

HASH_SECRET = "test-key-hash-secret"
JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password"

# Short periods so healing and retries show within a test.
FAST_RECONCILER: dict[str, Any] = {
    "interval": 0.2,
    "min_backoff": 0.1,
    "max_backoff": 0.4,
    "failed_load_backoff": 60.0,
    "list_timeout": 2.0,
    "load_timeout": 10.0,
    "unload_timeout": 2.0,
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database in the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bud.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


class EngineHost:
    """Runs an `InstantEngine` (no models until LoadModel) on a loopback port; can stop and
    restart it on the same port."""

    def __init__(self) -> None:
        self.engine = InstantEngine()
        self.port = 0
        self._server: GrpcServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, fresh: bool = False) -> None:
        """Starts serving (a fresh engine, as after an engine restart, when `fresh`)."""
        if fresh:
            self.engine = InstantEngine()
        self._server = await serve_instant_engine(f"127.0.0.1:{self.port}", self.engine)
        self.port = self._server.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


@pytest.fixture
async def engine_host() -> AsyncIterator[EngineHost]:
    """A running instant engine (no models until the app loads some)."""
    host = EngineHost()
    await host.start()
    yield host
    await host.stop()


@pytest.fixture
async def engine_factory() -> AsyncIterator[Callable[[int], EngineHost]]:
    """Makes engine hosts (not started) on a given port (0: any); stopped after the test."""
    hosts: list[EngineHost] = []

    def _make(port: int = 0) -> EngineHost:
        host = EngineHost()
        host.port = port
        hosts.append(host)
        return host

    yield _make
    for host in hosts:
        await host.stop()


@pytest.fixture
def app_settings(database_url: str, tmp_path: Path, engine_host: EngineHost) -> Settings:
    """Settings of an app on a free port, whose default deployments use the instant engine."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        app_address="127.0.0.1:0",
        engine_address=engine_host.address,
        key_hash_secret=HASH_SECRET,
        jwt_secret=JWT_SECRET,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        # The chat and embedding defaults only: tests count them (tests/app/test_images_*.py
        # start apps with the image default too).
        default_image_model_name="",
    )


@pytest.fixture
async def start(app_settings: Settings) -> AsyncIterator[Callable[..., Awaitable[RunningApp]]]:
    """Starts apps, stopped at the end of the test; keyword arguments override settings."""
    running: list[RunningApp] = []

    async def _start(**overrides: Any) -> RunningApp:
        settings = app_settings.model_copy(update=overrides)
        app = await start_app(settings, reconciler_options=FAST_RECONCILER)
        running.append(app)
        return app

    yield _start
    for app in running:
        await app.stop(grace=0)


@pytest.fixture
async def app(start: Callable[..., Awaitable[RunningApp]]) -> RunningApp:
    """A running app on a fresh database (bootstrapped: default project, two deployments, key)."""
    return await start()


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every unary call while `token` is set."""

    def __init__(self, token: str = "") -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if self.token:
            metadata = grpc.aio.Metadata(*(details.metadata or ()))
            metadata.add("authorization", f"Bearer {self.token}")
            details = details._replace(metadata=metadata)
        return await continuation(details, request)


@dataclass
class Stubs:
    """Clients of every service the app hosts, acting as one user: anonymous until `login`, or
    sending a given token."""

    channel: grpc.aio.Channel
    bearer: BearerToken
    projects: project_pb2_grpc.ProjectServiceStub
    deployments: deployment_pb2_grpc.DeploymentServiceStub
    api_keys: auth_pb2_grpc.ApiKeyServiceStub
    usage: usage_pb2_grpc.UsageServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    users: user_pb2_grpc.UserServiceStub
    engines: engine_registry_pb2_grpc.EngineRegistryServiceStub

    @classmethod
    def of(cls, address: str, token: str = "") -> Stubs:
        # The platform's channel (mutual TLS, its options), plus the token.
        bearer = BearerToken(token)
        channel = service_channel(address, interceptors=[bearer])
        return cls(
            channel,
            bearer,
            project_pb2_grpc.ProjectServiceStub(channel),
            deployment_pb2_grpc.DeploymentServiceStub(channel),
            auth_pb2_grpc.ApiKeyServiceStub(channel),
            usage_pb2_grpc.UsageServiceStub(channel),
            routing_pb2_grpc.RoutingServiceStub(channel),
            user_pb2_grpc.UserServiceStub(channel),
            engine_registry_pb2_grpc.EngineRegistryServiceStub(channel),
        )

    async def login(
        self, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD, **call: Any
    ) -> Stubs:
        """Logs in (the bootstrapped admin by default); later calls send the token. `call` goes
        to the Login call (timeout, wait_for_ready)."""
        reply = await self.users.Login(user_pb2.LoginRequest(username=username, password=password), **call)
        self.bearer.token = reply.access_token
        return self


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Stubs]]:
    """Makes clients of an app (or an address), anonymous (`await clients(app).login()` for the
    admin) or sending `token`; their channels close after the test."""
    made: list[Stubs] = []

    def _clients(target: RunningApp | str, token: str = "") -> Stubs:
        made.append(Stubs.of(target if isinstance(target, str) else target.address, token))
        return made[-1]

    yield _clients
    for client in made:
        await client.channel.close()


@pytest.fixture
async def stubs(app: RunningApp) -> AsyncIterator[Stubs]:
    """Clients of the `app` fixture's server, logged in as the bootstrapped platform admin."""
    client = await Stubs.of(app.address).login()
    yield client
    await client.channel.close()


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, param: str | None = None) -> ServiceError:
    """Awaits an RPC that must fail with `code` (and BadRequest field `param`, when given);
    returns the error with its details."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = ServiceError.from_rpc_error(info.value)
    assert err.code == code, f"expected {code.name}, got {err}"
    if param is not None:
        assert err.param == param, f"expected param {param!r}, got {err.param!r} ({err.message})"
    return err


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Polls `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def model_deployment(name: str, engine_id: str = "", **fields: Any) -> deployment_pb2.Deployment:
    """A builtin tiny-llama deployment on the registered engine `engine_id`, or, without one,
    placed by the platform (on the app's configured engine, the only one registered unless a
    test registers more)."""
    fields.setdefault("model", deployment_pb2.ModelSource(builtin="tiny-llama"))
    if engine_id:
        fields.setdefault("endpoints", [deployment_pb2.EngineEndpoint(engine_id=engine_id)])
    return deployment_pb2.Deployment(name=name, **fields)


async def register_engine(stubs: Stubs, address: str, name: str, max_models: int = 0) -> str:
    """Registers an engine (as `stubs`' user, a platform admin); returns its id."""
    reply = await stubs.engines.RegisterEngine(
        engine_registry_pb2.RegisterEngineRequest(
            engine=engine_registry_pb2.Engine(name=name, address=address, max_models=max_models)
        )
    )
    return str(reply.engine.id)


@pytest.fixture
def helpers() -> Any:
    """The helper functions above, for test modules (conftest modules are not importable)."""

    class Helpers:
        expect_error = staticmethod(expect_error)
        eventually = staticmethod(eventually)
        model_deployment = staticmethod(model_deployment)
        register_engine = staticmethod(register_engine)

    return Helpers
