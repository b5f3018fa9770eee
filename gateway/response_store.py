"""The gateway's side of stored responses (`store`, the Responses API's default): responses are
queued on the request path — a dict insert and one write to the spool file — and sent to the
app's ResponseStoreService in batches by a background task, like usage records
(`gateway.usage`); reads (GET, DELETE, input items, `previous_response_id`) are RPCs to the app.

Read-your-writes: a response stays in `pending` until the app has answered for its batch, so a
GET, DELETE or continuation right after the create, from the same gateway, finds it here first.
A response deleted while its batch is in flight is deleted at the app once the batch has landed.

Never lost: responses not yet delivered are kept in memory and in a spool file
(`gateway.usage_spool.UsageSpool` with `StoredResponse` records, in its own directory), retried
while the app is unreachable and handed to the next gateway process after a restart or a crash.
The app stores a response once per id, so a batch sent twice is harmless. Stored content is
tenant data: logs name counts and ids, never bodies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from bud.app.v1 import response_store_pb2 as pb
from bud.app.v1 import response_store_pb2_grpc
from budrt.errors import ServiceError, echo, not_found
from budrt.grpc_server import service_channel
from gateway.usage_spool import UsageSpool

log = logging.getLogger(__name__)

# The longest conversation resolved from this gateway's pending responses before asking the app.
MAX_TURNS = 1000
# Deadline of a read RPC to the app (a client waits on it).
READ_TIMEOUT_S = 10.0


def absent(response_id: str) -> ServiceError:
    """NOT_FOUND for a response that does not exist, expired, was deleted, was created with
    `store: false`, or is another project's (all alike, so no id leaks across projects)."""
    return not_found(f"Response with id {echo(response_id)} not found.", param="response_id")


class ResponseStore:
    """Queues stored responses, flushes them to the app, and reads them back (pending first)."""

    def __init__(
        self,
        app_address: str,
        flush_interval: float = 0.2,
        batch_size: int = 100,
        spool: UsageSpool | None = None,
    ) -> None:
        self.app_address = app_address
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        # Not yet answered for by the app (in flight included), by response id, oldest first.
        self._pending: dict[str, pb.StoredResponse] = {}
        self._in_flight: set[str] = set()
        # (project, id) deleted here while in flight: deleted at the app once their batch lands.
        self._delete_after: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._spool = spool
        self._channel: grpc.aio.Channel | None = None
        self._stub: response_store_pb2_grpc.ResponseStoreServiceStub | None = None
        self.refused = 0  # responses the app refused (logged by id, never resent)
        if spool is not None:
            try:
                for stored in spool.open():
                    self._pending[stored.response.id] = stored
            except OSError as err:  # a read-only or full disk must not keep the gateway down
                log.error("response spool disabled: cannot open %s (%s)", spool.directory, err)
                self._spool = None

    @property
    def stub(self) -> response_store_pb2_grpc.ResponseStoreServiceStub:
        if self._stub is None:
            self._channel = service_channel(self.app_address)
            self._stub = response_store_pb2_grpc.ResponseStoreServiceStub(self._channel)
        return self._stub

    @property
    def pending(self) -> int:
        """Responses not yet delivered."""
        return len(self._pending)

    # ---- writes (request path) ------------------------------------------------------------
    def put(self, stored: pb.StoredResponse) -> None:
        """Queues one response (spooled first; never blocks on the app, never raises)."""
        if self._spool is not None:
            self._spool.append(stored)
        self._pending[stored.response.id] = stored
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    # ---- reads ----------------------------------------------------------------------------
    def _local(self, project_id: str, response_id: str) -> pb.StoredResponse | None:
        stored = self._pending.get(response_id)
        return stored if stored is not None and stored.project_id == project_id else None

    async def get(self, project_id: str, response_id: str) -> pb.StoredResponse:
        """The project's stored response (NOT_FOUND as `absent`)."""
        stored = self._local(project_id, response_id)
        if stored is not None:
            return stored
        if (project_id, response_id) in self._delete_after:
            raise absent(response_id)
        reply = await self._call(
            self.stub.GetStoredResponse,
            pb.GetStoredResponseRequest(project_id=project_id, response_id=response_id),
        )
        return reply.stored

    async def delete(self, project_id: str, response_id: str) -> None:
        """Deletes the project's stored response (NOT_FOUND as `absent`)."""
        if self._local(project_id, response_id) is not None:
            del self._pending[response_id]
            if response_id in self._in_flight:
                self._delete_after.add((project_id, response_id))
            if self._spool is not None:
                self._spool.reset(self._pending.values())  # not resurrected by a restart
            return
        if (project_id, response_id) in self._delete_after:
            raise absent(response_id)
        await self._call(
            self.stub.DeleteStoredResponse,
            pb.DeleteStoredResponseRequest(project_id=project_id, response_id=response_id),
        )

    async def conversation(self, project_id: str, response_id: str) -> list[pb.StoredResponse]:
        """The turns ending at the project's response `response_id`, oldest first (NOT_FOUND as
        `absent` when it is not stored): the pending ones from here, the rest from the app."""
        recent: list[pb.StoredResponse] = []
        next_id = response_id
        while next_id and len(recent) < MAX_TURNS:
            stored = self._local(project_id, next_id)
            if stored is None:
                break
            recent.append(stored)
            next_id = stored.response.previous_response_id
        earlier: list[pb.StoredResponse] = []
        if next_id and len(recent) < MAX_TURNS and (project_id, next_id) not in self._delete_after:
            try:
                reply = await self._call(
                    self.stub.GetConversation,
                    pb.GetConversationRequest(project_id=project_id, response_id=next_id),
                )
                earlier = list(reply.turns)
            except ServiceError as err:
                # An earlier turn deleted or expired ends the conversation there.
                if err.code != grpc.StatusCode.NOT_FOUND or not recent:
                    raise
        elif next_id and not recent:
            raise absent(response_id)
        return earlier + recent[::-1]

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=READ_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise absent(getattr(request, "response_id", "")) from None
            raise ServiceError.from_rpc_error(err) from None

    # ---- the flusher ----------------------------------------------------------------------
    async def run(self) -> None:
        """Flushes until cancelled; a last flush is attempted on cancellation (what it cannot
        deliver stays in the spool for the next start)."""
        try:
            if self._pending:
                self._wake.set()  # responses recovered from the spool go first
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                self._wake.clear()
                await self._flush()
        finally:
            last = asyncio.ensure_future(self._flush())
            done, _ = await asyncio.wait({last}, timeout=2.0)
            if not done:
                last.cancel()
            await asyncio.gather(last, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Closes the channel and releases the spool (left for the next gateway when not empty)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None
        if self._spool is not None:
            self._spool.close()

    async def flush(self) -> None:
        """Delivers what is pending now (tests, and the last flush)."""
        await self._flush()

    async def _flush(self) -> None:
        await self._delete_later()  # nothing is in flight here: a lost answer's batch included
        while True:
            ids = [i for i in self._pending if i not in self._in_flight][: self.batch_size]
            if not ids:
                break
            batch = [self._pending[i] for i in ids]
            self._in_flight.update(ids)
            try:
                if self._spool is not None:
                    await asyncio.to_thread(self._spool.sync)  # durable before it is sent
                reply = await self.stub.StoreResponses(pb.StoreResponsesRequest(responses=batch), timeout=30)
            except grpc.aio.AioRpcError as err:
                log.warning(
                    "stored-response flush failed (%s); %d pending", err.code().name, len(self._pending)
                )
                return
            finally:
                self._in_flight.difference_update(ids)
            for i in ids:
                self._pending.pop(i, None)
            for refusal in reply.refused:
                self.refused += 1
                log.error(
                    "stored response refused by the app; dropped: %s",
                    refusal.message,
                    extra={"response_id": refusal.response_id, "refused_total": self.refused},
                )
            await self._delete_later()
            if self._spool is not None and not self._pending:
                self._spool.reset()
        if self._spool is not None and self._pending and self._spool.size > (16 << 20):
            self._spool.reset(self._pending.values())

    async def _delete_later(self) -> None:
        """Deletes at the app the responses deleted here while their batch was in flight."""
        for project_id, response_id in sorted(self._delete_after):
            try:
                await self.stub.DeleteStoredResponse(
                    pb.DeleteStoredResponseRequest(project_id=project_id, response_id=response_id), timeout=10
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    continue  # retried after the next batch
            self._delete_after.discard((project_id, response_id))
