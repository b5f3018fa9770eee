"""The gateway's calls to the control plane's RoutingService besides the routing watch:
`ReportLoad` (gateway/load.py sends the load every few seconds) and `WakeDeployment`
(gateway/cold_start.py asks for a deployment scaled to zero). One channel to the app, with the
gateway's own service identity, shared with the routing watch (`channel`).

Neither call is on a request's failure path: an app that cannot be reached, or one that does not
implement them yet (UNIMPLEMENTED), is logged — UNIMPLEMENTED once per RPC — and the gateway
keeps serving. The caller learns whether the call went through (True) and does the rest.
"""

from __future__ import annotations

import logging

import grpc

from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from budrt.grpc_server import service_channel

log = logging.getLogger(__name__)

# How long one call may take: a report is replaced by the next one, a wake is asked again.
CALL_TIMEOUT_S = 5.0


class ControlPlane:
    """A RoutingService client for load reports and wakes (the channel opens on first use)."""

    def __init__(self, app_address: str, gateway_id: str) -> None:
        self.app_address = app_address
        self.gateway_id = gateway_id
        self._channel: grpc.aio.Channel | None = None
        self._stub: routing_pb2_grpc.RoutingServiceStub | None = None
        # The RPCs the app answered UNIMPLEMENTED (logged once each).
        self.unimplemented: set[str] = set()
        self._failing: set[str] = set()  # the RPCs whose last call failed (logged once a streak)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to the app (the routing watch shares it)."""
        if self._channel is None:
            self._channel = service_channel(self.app_address)
        return self._channel

    def _routing(self) -> routing_pb2_grpc.RoutingServiceStub:
        if self._stub is None:
            self._stub = routing_pb2_grpc.RoutingServiceStub(self.channel)
        return self._stub

    async def report_load(self, request: routing_pb2.ReportLoadRequest) -> bool:
        """Sends one load report; False when it did not arrive."""
        request.gateway_id = self.gateway_id
        return await self._call("ReportLoad", request)

    async def wake(self, deployment_id: str) -> bool:
        """Asks the control plane to load a deployment scaled to zero; False when the call
        failed (the caller may ask again)."""
        request = routing_pb2.WakeDeploymentRequest(deployment_id=deployment_id, gateway_id=self.gateway_id)
        return await self._call("WakeDeployment", request)

    async def _call(self, rpc: str, request: object) -> bool:
        try:
            await getattr(self._routing(), rpc)(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                if rpc not in self.unimplemented:
                    self.unimplemented.add(rpc)
                    log.warning(
                        "the app does not implement RoutingService.%s yet; carrying on without it", rpc
                    )
            elif rpc not in self._failing:
                self._failing.add(rpc)
                log.warning("RoutingService.%s failed: %s; will retry", rpc, err.code().name)
            return False
        if rpc in self._failing:
            self._failing.discard(rpc)
            log.info("RoutingService.%s works again", rpc)
        self.unimplemented.discard(rpc)
        return True

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
