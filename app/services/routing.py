"""RoutingService: feeds gateways the tables they authenticate and route with.

WatchRouting first sends a full snapshot (``reset=true``) at the current routing revision: the
active, unexpired API keys, all deployments and all projects. It then sends, with each new
revision, only what differs from the previous one (upserts and deletes; revoked keys and deleted
rows are deletes).

Streams do not read the database: the process's :class:`~app.routing_feed.RoutingFeed` loads the
tables once per revision and hands every stream the same snapshot or delta, so an idle stream
costs nothing. A stream whose gateway stops reading while changes pile up is sent one fresh
snapshot instead of the deltas it missed.

No history of changes is kept, so a stream can only resume without a snapshot from the *current*
revision: a ``since_revision`` equal to it gets, instead of the snapshot, one empty message
carrying that revision (so the gateway knows the stream is live and caught up); any other value
(0, older, or newer after a database restore) gets a snapshot. A revision bump that changes nothing a gateway sees
(e.g. a deployment going from PENDING to LOADING) sends nothing; the gateway's revision then
lags and its next resume costs a snapshot. Keys that expire are dropped from the stream's tables
at the next change, so gateways must check `expire_time` themselves.

ReportLoad and WakeDeployment (gateways only, by service identity) feed the control plane's
autoscaler (`app.control.autoscaler`): the gateways' load every few seconds, kept in memory, and
the wake-up of a deployment scaled to zero that a request is waiting for.

Internal: gateways call it on the internal network, without a user token (see `app.authz`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from app.control.autoscaler import Autoscaler
from app.db.models import utcnow
from app.routing_feed import RoutingFeed
from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.errors import failed_precondition, invalid_argument
from budrt.grpc_server import ServiceBinding

log = logging.getLogger(__name__)

# A gateway's id in a report (its own choice: bounded).
MAX_GATEWAY_ID = 128


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    """Implements bud.auth.v1.RoutingService over the process's routing feed; streams end when
    the feed stops (server stop), and gateways then resume elsewhere or after the restart."""

    def __init__(self, feed: RoutingFeed, scaler: Autoscaler | None = None) -> None:
        self._feed = feed
        self._scaler = scaler

    async def WatchRouting(
        self, request: routing_pb2.WatchRoutingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.WatchRoutingResponse]:
        """A snapshot (unless resuming at the current revision), then changes as they commit."""
        async with self._feed.subscribe(request.since_revision) as subscription:
            log.info(
                "routing watch",
                extra={
                    "gateway_id": request.gateway_id,
                    "since_revision": request.since_revision,
                    "revision": self._feed.revision,
                    "watchers": self._feed.subscribers,
                },
            )
            async for message in subscription:
                yield message

    def _autoscaler(self) -> Autoscaler:
        if self._scaler is None:
            raise failed_precondition("this app runs no autoscaler")
        return self._scaler

    async def ReportLoad(
        self, request: routing_pb2.ReportLoadRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.ReportLoadResponse:
        """Keeps a gateway's load report in memory (`app.control.load.LoadBoard`): the signals of
        autoscaling, idleness and draining. Nothing is stored in the database."""
        if not request.gateway_id:
            raise invalid_argument("gateway_id is required", param="gateway_id")
        if len(request.gateway_id) > MAX_GATEWAY_ID:
            raise invalid_argument(
                f"gateway_id is longer than {MAX_GATEWAY_ID} characters", param="gateway_id"
            )
        self._autoscaler().board.report(request, utcnow())
        return routing_pb2.ReportLoadResponse()

    async def WakeDeployment(
        self, request: routing_pb2.WakeDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.WakeDeploymentResponse:
        """Loads a deployment scaled to zero (a request waits for it); `woke` false when it was
        already waking, loading or ready. NOT_FOUND for an unknown deployment."""
        if not request.deployment_id:
            raise invalid_argument("deployment_id is required", param="deployment_id")
        woke = await self._autoscaler().wake(request.deployment_id, request.gateway_id[:MAX_GATEWAY_ID])
        return routing_pb2.WakeDeploymentResponse(woke=woke)


def binding(feed: RoutingFeed, scaler: Autoscaler | None = None) -> ServiceBinding:
    """RoutingService, ready for `GrpcServer`; `scaler` takes the gateways' load reports and
    wake-ups."""
    return ServiceBinding(
        servicer=RoutingServicer(feed, scaler),
        add_to_server=routing_pb2_grpc.add_RoutingServiceServicer_to_server,
        descriptor=routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    )
