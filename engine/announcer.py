"""The engine announces itself to the app (`EngineRegistryService.AnnounceEngine`) so that the
control plane places replicas on it without a platform admin registering it, and keeps its lease.

On with `announce_address` (off by default). The call goes over the mesh's mutual TLS with the
engine's own certificate (`budrt.grpc_server.service_channel`); the app accepts it only from the
engine identity and only for an address the certificate names. It announces at start, then
every `announce_interval_seconds`, or every third of the lease the app grants when that is
shorter, so that one lost announcement never ends the lease. A failed announcement (the app not
up yet, a network blip) is logged — at WARNING once per run of failures, then at DEBUG — and
retried sooner, 1 s doubling up to the interval; it never stops the engine. The loop ends when
the engine stops; the lease then runs out and the control plane moves the replicas away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from bud.app.v1 import engine_registry_pb2, engine_registry_pb2_grpc
from budrt.grpc_server import service_channel
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

# One announcement's deadline.
CALL_TIMEOUT = 10.0
# The first retry after a failure; doubled up to the interval.
FIRST_RETRY = 1.0


class Announcer:
    """Announces one engine to the app until stopped."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        channel_factory: Callable[[str], grpc.aio.Channel] = service_channel,
        first_retry: float = FIRST_RETRY,
    ) -> None:
        self.app_address = settings.app_address
        self.engine = engine_registry_pb2.Engine(
            name=settings.announce_name,
            address=settings.announce_address,
            max_models=settings.announce_max_models,
        )
        self.interval = settings.announce_interval_seconds
        self.first_retry = min(first_retry, self.interval)
        self._channel_factory = channel_factory
        self._channel: grpc.aio.Channel | None = None
        # What the app answered last (None until it accepted one), and the failures in a row.
        self.last: engine_registry_pb2.AnnounceEngineResponse | None = None
        self.failures = 0

    async def announce_once(self) -> engine_registry_pb2.AnnounceEngineResponse:
        """One announcement; raises the call's error."""
        if self._channel is None:
            self._channel = self._channel_factory(self.app_address)
        stub = engine_registry_pb2_grpc.EngineRegistryServiceStub(self._channel)
        return await stub.AnnounceEngine(
            engine_registry_pb2.AnnounceEngineRequest(engine=self.engine), timeout=CALL_TIMEOUT
        )

    async def _drop_channel(self) -> None:
        # A fresh channel connects as soon as the app is back; the old one would first wait out
        # gRPC's own reconnect backoff (up to two minutes).
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def next_wait(self) -> float:
        """Seconds until the next announcement: the interval (a third of the lease when that is
        shorter) after a success, a doubling retry delay after failures."""
        if self.failures:
            return min(self.first_retry * 2 ** (self.failures - 1), self.interval)
        lease = self.last.lease_seconds if self.last is not None else 0
        return min(self.interval, lease / 3) if lease > 0 else self.interval

    async def step(self) -> None:
        """One announcement, its outcome recorded and logged (never raised)."""
        try:
            reply = await self.announce_once()
        except Exception as err:  # the app down, refused, or TLS material missing: never fatal
            self.failures += 1
            error = (
                f"{err.code().name}: {err.details()}" if isinstance(err, grpc.aio.AioRpcError) else repr(err)
            )
            level = logging.WARNING if self.failures == 1 else logging.DEBUG
            log.log(
                level,
                "announcing the engine to the app failed; retrying",
                extra={"app": self.app_address, "error": error},
            )
            await self._drop_channel()
            return
        if self.last is None or self.failures:
            log.info(
                "engine announced to the app",
                extra={
                    "engine": reply.engine.id,
                    "address": reply.engine.address,
                    "lease": reply.lease_seconds,
                },
            )
        self.last, self.failures = reply, 0

    async def run(self, stop: asyncio.Event) -> None:
        """Announces until `stop` is set."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.next_wait())
        finally:
            await self._drop_channel()
