"""RoutingService: feeds gateways the tables they authenticate and route with.

WatchRouting first sends a full snapshot (``reset=true``) at the current routing revision: the
active, unexpired API keys, all deployments and all projects. It then watches the revision —
polling it every 100 ms, and waking at once when this process commits a change — and sends, with
each new revision, only what differs from what this stream last sent (upserts and deletes;
revoked keys and deleted rows are deletes).

No history of changes is kept, so a stream can only resume without a snapshot from the *current*
revision: a ``since_revision`` equal to it gets, instead of the snapshot, one empty message
carrying that revision (so the gateway knows the stream is live and caught up); any other value
(0, older, or newer after a database restore) gets a snapshot. A revision bump that changes nothing a gateway sees
(e.g. a deployment going from PENDING to LOADING) sends nothing; the gateway's revision then
lags and its next resume costs a snapshot. Keys that expire are dropped from the stream's tables
at the next change, so gateways must check `expire_time` themselves.

Internal: gateways call it on the internal network, without a user token (see `app.authz`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from sqlalchemy import or_, select

from app.convert import route_deployment, route_key, route_project
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, current_revision
from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.grpc_server import ServiceBinding

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1


@dataclass
class RoutingTables:
    """The gateway tables at one revision, by id."""

    revision: int
    keys: dict[str, routing_pb2.RouteKey] = field(default_factory=dict)
    deployments: dict[str, routing_pb2.RouteDeployment] = field(default_factory=dict)
    projects: dict[str, routing_pb2.RouteProject] = field(default_factory=dict)

    def snapshot(self) -> routing_pb2.WatchRoutingResponse:
        """All of it, as a reset message."""
        return routing_pb2.WatchRoutingResponse(
            revision=self.revision,
            reset=True,
            upsert_keys=list(self.keys.values()),
            upsert_deployments=list(self.deployments.values()),
            upsert_projects=list(self.projects.values()),
        )

    def changes_since(self, old: RoutingTables) -> routing_pb2.WatchRoutingResponse:
        """What turns `old` into these tables (an empty message when nothing differs)."""
        return routing_pb2.WatchRoutingResponse(
            revision=self.revision,
            upsert_keys=[m for i, m in self.keys.items() if old.keys.get(i) != m],
            delete_key_ids=[i for i in old.keys if i not in self.keys],
            upsert_deployments=[m for i, m in self.deployments.items() if old.deployments.get(i) != m],
            delete_deployment_ids=[i for i in old.deployments if i not in self.deployments],
            upsert_projects=[m for i, m in self.projects.items() if old.projects.get(i) != m],
            delete_project_ids=[i for i in old.projects if i not in self.projects],
        )


async def load_tables(db: Database) -> RoutingTables:
    """The tables and their revision, read in one consistent snapshot."""
    async with db.snapshot() as session:
        revision = await current_revision(session)
        now = utcnow()
        keys = await session.scalars(
            select(models.ApiKey).where(
                models.ApiKey.revoke_time.is_(None),
                or_(models.ApiKey.expire_time.is_(None), models.ApiKey.expire_time > now),
            )
        )
        tables = RoutingTables(revision=revision, keys={k.id: route_key(k) for k in keys})
        for deployment in await session.scalars(select(models.Deployment)):
            tables.deployments[deployment.id] = route_deployment(deployment)
        for project in await session.scalars(select(models.Project)):
            tables.projects[project.id] = route_project(project)
    return tables


def _has_changes(message: routing_pb2.WatchRoutingResponse) -> bool:
    return any(
        len(getattr(message, name))
        for name in (
            "upsert_keys",
            "delete_key_ids",
            "upsert_deployments",
            "delete_deployment_ids",
            "upsert_projects",
            "delete_project_ids",
        )
    )


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    """Implements bud.auth.v1.RoutingService; streams end when `closing` is set (server stop),
    and gateways then resume elsewhere or after the restart."""

    def __init__(self, db: Database, closing: asyncio.Event, poll_interval: float = POLL_INTERVAL_S) -> None:
        self._db = db
        self._closing = closing
        self._poll_interval = poll_interval

    async def WatchRouting(
        self, request: routing_pb2.WatchRoutingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.WatchRoutingResponse]:
        """A snapshot (unless resuming at the current revision), then changes as they commit."""
        # Taken before reading: a change committed while we read still wakes us afterwards.
        wake = self._db.changes.current()
        sent = await load_tables(self._db)
        resumed = request.since_revision > 0 and request.since_revision == sent.revision
        log.info(
            "routing watch",
            extra={
                "gateway_id": request.gateway_id,
                "since_revision": request.since_revision,
                "revision": sent.revision,
                "snapshot": not resumed,
            },
        )
        yield sent.snapshot() if not resumed else routing_pb2.WatchRoutingResponse(revision=sent.revision)
        while not self._closing.is_set():
            try:
                await asyncio.wait_for(wake.wait(), self._poll_interval)
            except TimeoutError:
                pass
            wake = self._db.changes.current()
            if await self._db.revision() == sent.revision:
                continue
            tables = await load_tables(self._db)
            if tables.revision < sent.revision:  # the database went back (restored): start over
                yield tables.snapshot()
            else:
                message = tables.changes_since(sent)
                if _has_changes(message):
                    yield message
            sent = tables


def binding(db: Database, closing: asyncio.Event) -> ServiceBinding:
    """RoutingService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=RoutingServicer(db, closing),
        add_to_server=routing_pb2_grpc.add_RoutingServiceServicer_to_server,
        descriptor=routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    )
