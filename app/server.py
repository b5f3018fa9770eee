"""The app process: migrations, first-start bootstrap, the gRPC services and the reconciler.

:func:`serve` is what the launcher runs; :func:`start_app` starts the same thing and hands back a
:class:`RunningApp` (tests, and hosts that co-locate other services, use it directly).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.bootstrap import AdminResult, BootstrapResult, announce_admin, announce_key, bootstrap
from app.control import Reconciler, prompt_status
from app.control.autoscaler import Autoscaler
from app.control.replicas import ReplicaPolicy
from app.db.migrate import check_database_current, upgrade_database
from app.db.session import Database, discard
from app.images import ImageDefaults
from app.pricing import default_pricing
from app.prompts.cipher import KeyCipher
from app.registry_models import RegistryModels
from app.routing_feed import RoutingFeed
from app.services import (
    api_keys,
    budgets,
    deployments,
    engines,
    projects,
    prompts,
    responses_store,
    routing,
    usage,
    users,
)
from app.settings import AppSettings
from auth.service_identity import ServiceIdentityPolicy
from auth.tokens import Authenticator
from budrt.grpc_server import GrpcServer, ServiceBinding

log = logging.getLogger(__name__)

# How long in-flight RPCs may finish once stopping.
STOP_GRACE_S = 5.0


@dataclass
class RunningApp:
    """A started app: its server, database, reconciler and routing feed, and what its start
    bootstrapped."""

    settings: AppSettings
    db: Database
    server: GrpcServer
    reconciler: Reconciler
    bootstrapped: BootstrapResult | None
    admin: AdminResult | None
    _closing: asyncio.Event
    _reconciler_task: asyncio.Task[None]
    feed: RoutingFeed
    # Periodic tasks that end when `_closing` is set (the stored responses' purge).
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    # The client of the registry (a guest of this process) that resolves registry models.
    registry_models: RegistryModels | None = None

    @property
    def port(self) -> int:
        """The port the gRPC server listens on (useful when `app_address` asked for port 0)."""
        return self.server.port

    @property
    def address(self) -> str:
        """host:port to dial."""
        host = self.settings.app_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Ends watch streams and the reconciler, lets RPCs in flight finish within `grace`, then
        closes the database. Stopping again does nothing."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            await self.feed.stop()  # ends the watch streams
            await self.server.stop(grace)
            await self._reconciler_task
            await asyncio.gather(*self._background, return_exceptions=True)
        finally:
            if self.registry_models is not None:
                await self.registry_models.close()
            await self.db.dispose()
        log.info("app stopped")


async def start_app(
    settings: AppSettings,
    extra_bindings: Sequence[ServiceBinding] = (),
    *,
    reconciler_options: dict[str, Any] | None = None,
    registry_models: RegistryModels | None = None,
) -> RunningApp:
    """Migrates the database, bootstraps it on first start (printing the new API key and the
    admin's generated password), starts the gRPC server at `settings.app_address` and the
    reconciler. `reconciler_options` go to :class:`Reconciler` (intervals, timeouts).
    `registry_models`: how a deployment's registry model is resolved (default: the registry
    hosted here, dialled at this server's own address)."""
    db = Database(settings.resolved_database_url())
    feed: RoutingFeed | None = None
    try:
        if settings.migrate_on_start:
            await upgrade_database(db)
        else:  # `budrt migrate` ran before this rollout; a schema behind the code stops the start
            await check_database_current(db)
        async with db.mutation() as session:  # statuses written before they followed the target
            if not await prompt_status.refresh_all(session):
                discard(session)  # nothing to change: the revision stays
        hash_secret = settings.secret("key_hash_secret")
        created, admin = await bootstrap(db, settings, hash_secret)
        if created is not None:
            announce_key(created, settings.default_project)
        if admin is not None:
            announce_admin(admin)
            log.info("platform admin created", extra={"username": admin.username, "user_id": admin.user_id})
        auth = Authenticator(settings.secret("jwt_secret"))
        closing = asyncio.Event()
        image_defaults = ImageDefaults.of(settings)
        feed = RoutingFeed(db, image_defaults=image_defaults)
        await feed.start()
        autoscaler = Autoscaler.of(db, settings)
        reconciler = Reconciler(db, **{"scaler": autoscaler, **(reconciler_options or {})})
        listening: list[GrpcServer] = []
        if registry_models is None:
            host = settings.app_address.rsplit(":", 1)[0]
            registry_models = RegistryModels(lambda: f"{host}:{listening[0].port}")
        server = GrpcServer(
            settings.app_address,
            [
                projects.binding(db, reconciler, auth),
                deployments.binding(
                    db,
                    reconciler,
                    auth,
                    registry_models,
                    ReplicaPolicy.of(settings),
                    default_pricing(settings),
                    image_defaults,
                ),
                budgets.binding(db, auth),
                engines.binding(db, auth, settings.engine_lease_seconds),
                api_keys.binding(db, hash_secret, auth),
                usage.binding(db, auth),
                routing.binding(feed, autoscaler),
                users.binding(db, auth),
                responses_store.binding(db, settings.response_retention_days),
                prompts.binding(
                    db,
                    auth,
                    KeyCipher(settings.secret("prompt_secrets_key")),
                    closing,
                    executor_address=settings.prompt_address,
                ),
                *extra_bindings,
            ],
            authorization=ServiceIdentityPolicy(),
        )
        await server.start()
        listening.append(server)
    except BaseException:
        if feed is not None:
            await feed.stop()
        await db.dispose()
        raise
    task = asyncio.create_task(reconciler.run(closing), name="reconciler")
    purger = responses_store.ResponsePurger(
        db, settings.response_retention_days, settings.response_purge_interval
    )
    background = [asyncio.create_task(purger.run(closing), name="response-purge")]
    log.info(
        "app serving", extra={"address": settings.app_address, "port": server.port, "database": db.dialect}
    )
    return RunningApp(
        settings, db, server, reconciler, created, admin, closing, task, feed, background, registry_models
    )


async def serve(
    settings: AppSettings, stop: asyncio.Event, extra_bindings: Sequence[ServiceBinding] = ()
) -> None:
    """Runs the app until `stop` is set, then stops gracefully.

    Runs the migrations and the first-start bootstrap before serving, hosts ProjectService,
    DeploymentService, EngineRegistryService, ApiKeyService, UsageService, RoutingService, UserService, PromptService and ResponseStoreService plus
    `extra_bindings` at `settings.app_address`, and runs the engine reconciler. Management RPCs
    need a user's access token (`app.authz`); WatchRouting and RecordUsage, which gateways call,
    do not.
    """
    app = await start_app(settings, extra_bindings)
    try:
        await stop.wait()
    finally:
        await app.stop()
