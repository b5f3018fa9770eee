"""A RoutingService double for the gateway's operations tests (cold starts, load reports): a real
gRPC server the gateway's routing watch, load reporter and waker call, as they call the app.

- `WatchRouting` streams the current snapshot, then every update `publish` is given.
- `ReportLoad` keeps each report (`reports`); `WakeDeployment` each wake (`wakes`), and, when
  `ready_after` is set, publishes the deployment ready on `ready_endpoint` that many seconds
  later (what the control plane does once the model has loaded).
- `implemented=False`: both answer UNIMPLEMENTED, as the app did before it implemented them;
  `fail_wakes`: that many wakes answer UNAVAILABLE first (the app briefly unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.errors import unavailable, unimplemented
from budrt.grpc_server import GrpcServer, ServiceBinding
from tests.support.mesh import free_port

ROUTING_SERVICE = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"]


class RoutingDouble(routing_pb2_grpc.RoutingServiceServicer):
    """What the app's RoutingService does, as far as one gateway can tell."""

    def __init__(self, snapshot: routing_pb2.WatchRoutingResponse) -> None:
        self.snapshot = snapshot
        self.revision = snapshot.revision
        self.reports: list[routing_pb2.ReportLoadRequest] = []
        self.wakes: list[routing_pb2.WakeDeploymentRequest] = []
        self.implemented = True
        self.fail_wakes = 0
        self.ready_after: float | None = None
        self.ready_endpoint = routing_pb2.RouteEndpoint()
        self._watchers: list[asyncio.Queue[routing_pb2.WatchRoutingResponse]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def deployment(self, deployment_id: str) -> routing_pb2.RouteDeployment:
        (found,) = [d for d in self.snapshot.upsert_deployments if d.id == deployment_id]
        return found

    def publish(self, *deployments: routing_pb2.RouteDeployment) -> None:
        """Upserts deployments: into the snapshot (for new watches) and to every watch."""
        self.revision += 1
        self.snapshot.revision = self.revision
        for d in deployments:
            self.deployment(d.id).CopyFrom(d)
        update = routing_pb2.WatchRoutingResponse(revision=self.revision, upsert_deployments=deployments)
        for queue in self._watchers:
            queue.put_nowait(update)

    def set_ready(self, deployment_id: str, endpoint: routing_pb2.RouteEndpoint | None = None) -> None:
        """The deployment loaded: ready, on `endpoint` (default `ready_endpoint`), no cold start."""
        d = routing_pb2.RouteDeployment()
        d.CopyFrom(self.deployment(deployment_id))
        d.ready, d.cold_start = True, False
        del d.endpoints[:]
        d.endpoints.add().CopyFrom(endpoint or self.ready_endpoint)
        self.publish(d)

    def set_cold(self, deployment_id: str, *, cold_start: bool = True) -> None:
        """Scaled to zero (no replicas, `cold_start`), or failed (`cold_start` False)."""
        d = routing_pb2.RouteDeployment()
        d.CopyFrom(self.deployment(deployment_id))
        d.ready, d.cold_start = False, cold_start
        del d.endpoints[:]
        self.publish(d)

    async def WatchRouting(
        self, request: Any, context: Any
    ) -> AsyncIterator[routing_pb2.WatchRoutingResponse]:
        queue: asyncio.Queue[routing_pb2.WatchRoutingResponse] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            yield self.snapshot
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)

    async def ReportLoad(self, request: Any, context: Any) -> routing_pb2.ReportLoadResponse:
        if not self.implemented:
            raise unimplemented("Method not implemented!")
        self.reports.append(request)
        return routing_pb2.ReportLoadResponse()

    async def WakeDeployment(self, request: Any, context: Any) -> routing_pb2.WakeDeploymentResponse:
        if not self.implemented:
            raise unimplemented("Method not implemented!")
        self.wakes.append(request)
        if self.fail_wakes > 0:
            self.fail_wakes -= 1
            raise unavailable("the control plane is busy")
        if self.ready_after is not None:
            task = asyncio.get_running_loop().create_task(self._load(request.deployment_id, self.ready_after))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return routing_pb2.WakeDeploymentResponse(woke=len(self.wakes) == 1)

    async def _load(self, deployment_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.set_ready(deployment_id)

    def loads(self, deployment_id: str) -> list[routing_pb2.DeploymentLoad]:
        """The deployment's entry in each report so far, in order."""
        return [d for r in self.reports for d in r.deployments if d.deployment_id == deployment_id]


@contextlib.asynccontextmanager
async def routing_double(
    snapshot: routing_pb2.WatchRoutingResponse,
) -> AsyncIterator[tuple[RoutingDouble, str]]:
    """Serves a RoutingDouble on a loopback port (plaintext, as the tests' services are); yields it
    and its address."""
    double = RoutingDouble(snapshot)
    address = f"127.0.0.1:{free_port()}"
    server = GrpcServer(
        address,
        [ServiceBinding(double, routing_pb2_grpc.add_RoutingServiceServicer_to_server, ROUTING_SERVICE)],
    )
    await server.start()
    try:
        yield double, address
    finally:
        for task in list(double._tasks):
            task.cancel()
        await server.stop(0)
