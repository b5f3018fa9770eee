"""EngineRegistryService: the platform's engines, for platform admins only.

Engines are platform resources: a platform admin registers each one (name, address, capacity),
and deployments then name engines by id or are placed on one by the control plane
(`app.control.engines`). Every other caller gets PERMISSION_DENIED, whatever their project roles:
a tenant never reads an engine's address here. The embedded mesh registers its configured engine
at start (`app.bootstrap`). An engine may also register itself and renew its lease with its own
certificate (`AnnounceEngine`, `app.services.engine_announce`); the control plane places nothing
on an engine whose lease ended and moves its replicas away (`app.control.leases`). An engine is removed only once no deployment runs on it
(FAILED_PRECONDITION, ENGINE_IN_USE, otherwise).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import grpc
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access
from app.control.engines import lease_active
from app.convert import to_timestamp
from app.db import models
from app.db.models import utcnow
from app.db.session import Database
from app.services.common import conflicts_as
from app.services.engine_announce import announce, check_announcer
from app.services.pagination import fetch_page
from app.validation import check_address, check_engine, require
from auth.roles import require_admin
from auth.tokens import Authenticator
from bud.app.v1 import engine_registry_pb2 as pb
from bud.app.v1 import engine_registry_pb2_grpc
from budrt.errors import Reason, already_exists, failed_precondition, not_found
from budrt.grpc_server import ServiceBinding

log = logging.getLogger(__name__)

WHAT = "managing engines"


async def _model_counts(session: AsyncSession, engine_ids: list[str]) -> dict[str, int]:
    endpoint = models.DeploymentEndpoint
    rows = await session.execute(
        select(endpoint.engine_id, func.count())
        .where(endpoint.engine_id.in_(engine_ids))
        .group_by(endpoint.engine_id)
    )
    return {engine_id: count for engine_id, count in rows.all()}


def engine_to_proto(row: models.Engine, model_count: int) -> pb.Engine:
    """The Engine message of a row (its lease, when it announced itself)."""
    engine = pb.Engine(
        id=row.id,
        name=row.name,
        address=row.address,
        max_models=row.max_models,
        model_count=model_count,
        create_time=to_timestamp(row.create_time),
    )
    if row.last_seen is not None:
        engine.last_seen.CopyFrom(to_timestamp(row.last_seen))
    if row.lease_expire_time is not None:
        engine.lease_expire_time.CopyFrom(to_timestamp(row.lease_expire_time))
        engine.lease_expired = not lease_active(row, utcnow())
    return engine


async def _get(session: AsyncSession, engine_id: str) -> models.Engine:
    row = await session.get(models.Engine, engine_id)
    if row is None:
        raise not_found(f"engine {engine_id!r} not found", param="engine_id")
    return row


def _conflict(err: IntegrityError) -> Exception:
    field = "address" if "address" in str(err.orig) else "name"
    return already_exists(f"an engine with this {field} is already registered", param=f"engine.{field}")


class EngineRegistryServicer(engine_registry_pb2_grpc.EngineRegistryServiceServicer):
    """Implements bud.app.v1.EngineRegistryService (platform admins only)."""

    def __init__(self, db: Database, auth: Authenticator, lease_seconds: float = 90.0) -> None:
        self._db = db
        self._access = Access(db, auth)
        self._lease_seconds = lease_seconds

    async def _admin(self, context: grpc.aio.ServicerContext) -> None:
        caller = await self._access.caller(context)
        require_admin(caller, WHAT)

    async def RegisterEngine(
        self, request: pb.RegisterEngineRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterEngineResponse:
        """Registers an engine; ALREADY_EXISTS when its name or address is taken."""
        await self._admin(context)
        engine = request.engine
        check_engine(engine)
        with conflicts_as(_conflict):
            async with self._db.transaction() as session:
                for field in ("name", "address"):
                    column = getattr(models.Engine, field)
                    if await session.scalar(select(models.Engine.id).where(column == getattr(engine, field))):
                        raise already_exists(
                            f"an engine with this {field} is already registered", param=f"engine.{field}"
                        )
                row = models.Engine(
                    id=ids.new_id(ids.ENGINE),
                    name=engine.name,
                    address=engine.address,
                    max_models=engine.max_models,
                    create_time=utcnow(),
                )
                session.add(row)
                await session.flush()
                reply = pb.RegisterEngineResponse(engine=engine_to_proto(row, 0))
        return reply

    async def GetEngine(
        self, request: pb.GetEngineRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEngineResponse:
        """One engine, with the number of deployment replicas on it."""
        await self._admin(context)
        require(request.engine_id, "engine_id")
        async with self._db.snapshot() as session:
            row = await _get(session, request.engine_id)
            counts = await _model_counts(session, [row.id])
            return pb.GetEngineResponse(engine=engine_to_proto(row, counts.get(row.id, 0)))

    async def ListEngines(
        self, request: pb.ListEnginesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEnginesResponse:
        """Engines in registration order, paginated."""
        await self._admin(context)
        async with self._db.snapshot() as session:
            rows, token = await fetch_page(
                session, select(models.Engine), models.Engine.id, "engines", request
            )
            counts = await _model_counts(session, [r.id for r in rows])
            return pb.ListEnginesResponse(
                engines=[engine_to_proto(r, counts.get(r.id, 0)) for r in rows], next_page_token=token
            )

    async def DeleteEngine(
        self, request: pb.DeleteEngineRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteEngineResponse:
        """Removes an engine no deployment runs on (FAILED_PRECONDITION, ENGINE_IN_USE, otherwise:
        move or delete those deployments first)."""
        await self._admin(context)
        require(request.engine_id, "engine_id")
        async with self._db.transaction() as session:
            # Locked as placement locks it (PostgreSQL): no deployment lands on it meanwhile.
            row = await session.scalar(
                select(models.Engine).where(models.Engine.id == request.engine_id).with_for_update()
            )
            if row is None:
                raise not_found(f"engine {request.engine_id!r} not found", param="engine_id")
            in_use = (await _model_counts(session, [row.id])).get(row.id, 0)
            if in_use:
                raise failed_precondition(
                    f"engine {row.id!r} runs {in_use} deployment replica(s); move or delete them first",
                    reason=Reason.ENGINE_IN_USE,
                    param="engine_id",
                )
            await session.delete(row)
        return pb.DeleteEngineResponse()

    async def AnnounceEngine(
        self, request: pb.AnnounceEngineRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnnounceEngineResponse:
        """An engine registers itself or renews its lease (engines only, by service identity; no
        user token). PERMISSION_DENIED when its certificate does not name the announced host."""
        check_address(request.engine.address, "engine.address")
        check_announcer(request.engine.address, context.auth_context())
        row, created = await announce(
            self._db, request.engine, timedelta(seconds=self._lease_seconds), utcnow()
        )
        if created:
            log.info("an engine registered itself", extra={"engine": row.id, "address": row.address})
        async with self._db.snapshot() as session:
            count = (await _model_counts(session, [row.id])).get(row.id, 0)
        return pb.AnnounceEngineResponse(
            engine=engine_to_proto(row, count), lease_seconds=max(1, int(self._lease_seconds))
        )


def binding(db: Database, auth: Authenticator, lease_seconds: float = 90.0) -> ServiceBinding:
    """EngineRegistryService, ready for `GrpcServer` (`lease_seconds`: the lease of an engine
    that announces itself)."""
    return ServiceBinding(
        servicer=EngineRegistryServicer(db, auth, lease_seconds),
        add_to_server=engine_registry_pb2_grpc.add_EngineRegistryServiceServicer_to_server,
        descriptor=pb.DESCRIPTOR.services_by_name["EngineRegistryService"],
    )
