"""Connections to engine replicas: one channel per address, least-outstanding-requests choice."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from bud.engine.v1 import engine_service_pb2_grpc
from budrt.grpc_server import insecure_channel
from gateway.tables import Endpoint


@dataclass
class EngineConnection:
    """A channel and stub to one engine, and the requests in flight on it."""

    address: str
    channel: grpc.aio.Channel
    stub: engine_service_pb2_grpc.EngineServiceStub
    outstanding: int = 0


class EnginePool:
    """Engine connections by address."""

    def __init__(self) -> None:
        self._connections: dict[str, EngineConnection] = {}

    def connection(self, address: str) -> EngineConnection:
        """The (cached) connection to an engine."""
        conn = self._connections.get(address)
        if conn is None:
            channel = insecure_channel(address)
            conn = EngineConnection(address, channel, engine_service_pb2_grpc.EngineServiceStub(channel))
            self._connections[address] = conn
        return conn

    def choose(self, endpoints: list[Endpoint]) -> tuple[Endpoint, EngineConnection]:
        """The endpoint with the fewest requests in flight."""
        best: tuple[Endpoint, EngineConnection] | None = None
        for endpoint in endpoints:
            conn = self.connection(endpoint.address)
            if best is None or conn.outstanding < best[1].outstanding:
                best = (endpoint, conn)
        if best is None:
            raise LookupError("no endpoints")
        return best

    @contextlib.contextmanager
    def lease(self, conn: EngineConnection) -> Iterator[EngineConnection]:
        """Counts a request in flight on `conn` while the block runs."""
        conn.outstanding += 1
        try:
            yield conn
        finally:
            conn.outstanding -= 1

    async def close(self) -> None:
        """Closes every channel."""
        for conn in self._connections.values():
            await conn.channel.close()
        self._connections.clear()
