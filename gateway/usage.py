"""Usage accounting: one record per request, queued on the request path (a list append) and sent
to the app's UsageService in batches by a background task. Records that cannot be delivered are
kept (up to a bound) and retried, so an app outage loses nothing short of that bound."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import grpc

from bud.app.v1 import usage_pb2, usage_pb2_grpc
from budrt.grpc_server import insecure_channel

log = logging.getLogger(__name__)


class UsageRecorder:
    """Buffers usage records and flushes them to the app."""

    def __init__(
        self,
        app_address: str,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_buffered: int = 1_000_000,
    ) -> None:
        self.app_address = app_address
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._buffer: deque[usage_pb2.UsageRecord] = deque(maxlen=max_buffered)
        self._wake = asyncio.Event()

    def record(
        self,
        request_id: str,
        project_id: str,
        api_key_id: str,
        deployment_id: str,
        operation: str,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
        status_code: int,
    ) -> None:
        """Queues one request's usage (never blocks, never raises)."""
        now = time.time()
        rec = usage_pb2.UsageRecord(
            request_id=request_id,
            project_id=project_id,
            api_key_id=api_key_id,
            deployment_id=deployment_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            status_code=status_code,
            operation=operation,
        )
        rec.time.FromNanoseconds(int(now * 1e9))
        self._buffer.append(rec)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Records not yet delivered."""
        return len(self._buffer)

    async def run(self) -> None:
        """Flushes until cancelled; a last flush is attempted on cancellation."""
        channel = insecure_channel(self.app_address)
        stub = usage_pb2_grpc.UsageServiceStub(channel)
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
                self._wake.clear()
                await self._flush(stub)
        finally:
            try:
                await asyncio.wait_for(asyncio.shield(self._flush(stub)), 2.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
            await channel.close()

    async def _flush(self, stub: usage_pb2_grpc.UsageServiceStub) -> None:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                await stub.RecordUsage(usage_pb2.RecordUsageRequest(records=batch), timeout=10)
            except grpc.aio.AioRpcError as err:
                self._buffer.extendleft(reversed(batch))  # keep order; retried next round
                log.warning("usage flush failed (%s); %d records pending", err.code().name, len(self._buffer))
                return
