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

Internal: gateways call it on the internal network, without a user token (see `app.authz`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from app.routing_feed import RoutingFeed
from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.grpc_server import ServiceBinding

log = logging.getLogger(__name__)


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    """Implements bud.auth.v1.RoutingService over the process's routing feed; streams end when
    the feed stops (server stop), and gateways then resume elsewhere or after the restart."""

    def __init__(self, feed: RoutingFeed) -> None:
        self._feed = feed

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


def binding(feed: RoutingFeed) -> ServiceBinding:
    """RoutingService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=RoutingServicer(feed),
        add_to_server=routing_pb2_grpc.add_RoutingServiceServicer_to_server,
        descriptor=routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    )
