"""Usage accounting: one record per request, queued on the request path (a list append and one
write to the spool file) and sent to the app's UsageService in batches by a background task.

Each record's key (`request_id`) is made here, one per request, never the client's X-Request-Id
(kept as `client_request_id`): requests sharing a client id are still counted apart, and a client
cannot choose a key the app refuses. The app dedups on the key, so a batch whose answer was lost
is simply sent again. A record the app refuses (`RecordUsageResponse.refused`) is quarantined:
logged with the reason and the whole record, counted in `quarantined`, and never sent again — the
rest of its batch is stored. Records that cannot be delivered (app unreachable) are kept, in
memory up to a bound and in the spool (`gateway.usage_spool`) on disk, and retried; the spool
hands them to the next gateway process after a restart or a crash.

A cancelled or failed request's record is made a moment later, once the engine has said what it
processed (`OpenAiServicer._charge_unfinished`): such a charge is `track`ed here, and the
recorder's last flush waits for the charges under way (their timeout bounds it) so that a
stopping gateway still records them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence

import grpc
from google.protobuf import json_format

from auth.prompt_run import PromptRun
from bud.app.v1 import usage_pb2, usage_pb2_grpc
from budrt.grpc_server import service_channel
from gateway.usage_spool import UsageSpool

log = logging.getLogger(__name__)

# The app's bound on request ids; a longer client id is cut (it is only a correlation aid).
MAX_CLIENT_REQUEST_ID = 128
# How long a stopping recorder waits for the charges of unfinished calls still under way.
CHARGE_WAIT_S = 3.0


class UsageRecorder:
    """Buffers usage records (and spools them when given a `spool`) and flushes them to the app."""

    def __init__(
        self,
        app_address: str,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_buffered: int = 1_000_000,
        spool: UsageSpool | None = None,
        compact_bytes: int = 16 << 20,
    ) -> None:
        self.app_address = app_address
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.compact_bytes = compact_bytes
        self._buffer: deque[usage_pb2.UsageRecord] = deque(maxlen=max_buffered)
        self._wake = asyncio.Event()
        self._spool = spool
        # Records the app refused: logged and dropped, never resent (for the metrics endpoint).
        self.quarantined = 0
        # Charges of unfinished calls whose record is still to come (see `track`).
        self._charges: set[asyncio.Future[None]] = set()
        if spool is not None:
            try:
                self._buffer.extend(spool.open())
            except OSError as err:  # a read-only or full disk must not keep the gateway down
                log.error("usage spool disabled: cannot open %s (%s)", spool.directory, err)
                self._spool = None

    def record(
        self,
        client_request_id: str,
        project_id: str,
        api_key_id: str,
        deployment_id: str,
        operation: str,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
        status_code: int,
        prompt: PromptRun | None = None,
        cached: bool = False,
        cost_usd: str = "",
        images: int = 0,
        image_size: str = "",
        image_steps: int = 0,
    ) -> None:
        """Queues one request's usage under a new key (never blocks, never raises). `cached`: it
        was answered from the response cache (its tokens are zero); `cost_usd`: what it cost at
        the deployment's price (a decimal string, `budrt.money.format_nanos`)."""
        now = time.time()
        rec = usage_pb2.UsageRecord(
            request_id=uuid.uuid4().hex,
            client_request_id=client_request_id[:MAX_CLIENT_REQUEST_ID],
            project_id=project_id,
            api_key_id=api_key_id,
            deployment_id=deployment_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            status_code=status_code,
            operation=operation,
            cached=cached,
            cost_usd=cost_usd,
            images=images,
            image_size=image_size,
            image_steps=image_steps,
        )
        if prompt is not None:  # a model call of a prompt run
            rec.prompt_id = prompt.prompt_id
            rec.prompt_version = prompt.version
            rec.prompt_deployment_id = prompt.deployment_id
        rec.time.FromNanoseconds(int(now * 1e9))
        self.add(rec)

    def add(self, rec: usage_pb2.UsageRecord) -> None:
        """Queues a built record (spooled first)."""
        if self._spool is not None:
            self._spool.append(rec)
        self._buffer.append(rec)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def track(self, charge: asyncio.Future[None]) -> None:
        """Holds a charge under way (a task that ends by calling `record`), so that the last flush
        waits for it."""
        self._charges.add(charge)
        charge.add_done_callback(self._charges.discard)

    async def _await_charges(self, timeout: float = CHARGE_WAIT_S) -> None:
        """Waits for the charges under way; those still running after `timeout` are cancelled,
        which records them with what is known (their own `finally`)."""
        if not self._charges:
            return
        charges = set(self._charges)
        _, late = await asyncio.wait(charges, timeout=timeout)
        for charge in late:
            charge.cancel()
        await asyncio.gather(*charges, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Records not yet delivered."""
        return len(self._buffer)

    async def run(self) -> None:
        """Flushes until cancelled; a last flush is attempted on cancellation (what it cannot
        deliver stays in the spool for the next start)."""
        channel = service_channel(self.app_address)
        stub = usage_pb2_grpc.UsageServiceStub(channel)
        try:
            if self._buffer:
                self._wake.set()  # records recovered from the spool go first
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
                self._wake.clear()
                await self._flush(stub)
        finally:
            await self._await_charges()
            last = asyncio.ensure_future(self._flush(stub))
            done, _ = await asyncio.wait({last}, timeout=2.0)
            if not done:
                last.cancel()
            await asyncio.gather(last, return_exceptions=True)
            await channel.close()
            if self._spool is not None:
                self._spool.close()

    async def _flush(self, stub: usage_pb2_grpc.UsageServiceStub) -> None:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                if self._spool is not None:
                    await asyncio.to_thread(self._spool.sync)  # durable before it is sent
                reply = await stub.RecordUsage(usage_pb2.RecordUsageRequest(records=batch), timeout=10)
            except grpc.aio.AioRpcError as err:
                self._buffer.extendleft(reversed(batch))  # keep order; retried next round
                log.warning("usage flush failed (%s); %d records pending", err.code().name, len(self._buffer))
                return
            except BaseException:
                self._buffer.extendleft(reversed(batch))  # cancelled mid-batch: still pending
                raise
            self._quarantine(batch, reply.refused)
            self._compact()

    def _quarantine(
        self, batch: Sequence[usage_pb2.UsageRecord], refused: Sequence[usage_pb2.RefusedUsageRecord]
    ) -> None:
        """Logs each refused record (whole, so an operator can replay it) and counts it."""
        for refusal in refused:
            record = batch[refusal.index] if 0 <= refusal.index < len(batch) else None
            self.quarantined += 1
            log.error(
                "usage record refused by the app; quarantined (not resent): %s",
                refusal.message,
                extra={
                    "reason": refusal.reason,
                    "field": refusal.field,
                    "usage_record": json_format.MessageToDict(record) if record is not None else None,
                    "quarantined_total": self.quarantined,
                },
            )

    def _compact(self) -> None:
        """Drops what the app has answered from the spool: truncated when nothing is pending
        (no batch is in flight here), rewritten when a backlog has made it large."""
        if self._spool is None:
            return
        if not self._buffer:
            self._spool.reset()
        elif self._spool.size > self.compact_bytes:
            self._spool.reset(self._buffer)
