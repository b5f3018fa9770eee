"""ResponseStoreService: the Responses API's stored responses (`store: true`), per project.

Gateways write responses in batches, off the request path (`gateway/response_store.py`), and read
them back for GET/DELETE /v1/responses/{id}, the input items and `previous_response_id`. Every RPC
names the project: the gateway has authenticated the caller's project API key, and a response of
another project is NOT_FOUND, exactly as one that does not exist. Internal (gateways only, by
service identity); no user token.

A response is stored once per id (a gateway may resend a batch whose answer it lost). Retention:
responses older than `response_retention_days` are absent to reads at once and deleted by
:class:`ResponsePurger`, a periodic task of the app. The stored bodies are tenant data: nothing
here logs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models
from app.db.models import utcnow
from app.db.session import Database
from bud.app.v1 import response_store_pb2 as pb
from bud.app.v1 import response_store_pb2_grpc
from budrt.errors import echo, invalid_argument, not_found
from budrt.grpc_server import ServiceBinding

log = logging.getLogger(__name__)

# Rows per INSERT statement: keeps the bound parameters under SQLite's limit.
_CHUNK = 100
_MAX_ID = 64
# The longest conversation GetConversation walks back (a chain is acyclic: each response names
# one created before it; the bound keeps one read bounded all the same).
MAX_TURNS = 1000


def _row(stored: pb.StoredResponse, index: int, now: datetime) -> dict[str, Any]:
    response = stored.response
    where = f"responses[{index}]"
    if not response.id or len(response.id) > _MAX_ID:
        raise invalid_argument(f"{where}.response.id must be 1..{_MAX_ID} characters", param=f"{where}.id")
    if not stored.project_id or len(stored.project_id) > _MAX_ID:
        raise invalid_argument(
            f"{where}.project_id must be 1..{_MAX_ID} characters", param=f"{where}.project_id"
        )
    if len(stored.api_key_id) > _MAX_ID or len(response.previous_response_id) > _MAX_ID:
        raise invalid_argument(f"{where}: an id is longer than {_MAX_ID} characters", param=where)
    created = datetime.fromtimestamp(response.created_at, tz=now.tzinfo) if response.created_at else now
    return {
        "id": response.id,
        "project_id": stored.project_id,
        "api_key_id": stored.api_key_id,
        "previous_response_id": response.previous_response_id,
        "create_time": created,
        "body": stored.SerializeToString(),
    }


async def store_responses(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Inserts response rows, skipping ids already stored; returns how many were new."""
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    stored = 0
    ordered = sorted(rows, key=lambda r: r["id"])  # overlapping batches lock in one order
    for start in range(0, len(ordered), _CHUNK):
        stmt = (
            insert(models.StoredResponse)
            .values(ordered[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(models.StoredResponse.id)
        )
        stored += len((await session.execute(stmt)).all())
    return stored


async def purge_expired(db: Database, retention_days: int, now: datetime | None = None) -> int:
    """Deletes the responses created more than `retention_days` ago (0: keeps them all);
    returns how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    async with db.transaction() as session:
        result = await session.execute(
            delete(models.StoredResponse).where(models.StoredResponse.create_time < cutoff)
        )
    return int(result.rowcount or 0)


class ResponseStoreServicer(response_store_pb2_grpc.ResponseStoreServiceServicer):
    """Implements bud.app.v1.ResponseStoreService."""

    def __init__(self, db: Database, retention_days: int = 0) -> None:
        self._db = db
        self.retention_days = retention_days

    def _live(self, stmt: Any) -> Any:
        """`stmt` narrowed to the responses still within retention."""
        if self.retention_days > 0:
            cutoff = utcnow() - timedelta(days=self.retention_days)
            stmt = stmt.where(models.StoredResponse.create_time >= cutoff)
        return stmt

    async def _load(
        self, session: AsyncSession, project_id: str, response_id: str
    ) -> pb.StoredResponse | None:
        row = models.StoredResponse
        body = (
            await session.execute(
                self._live(select(row.body).where(row.id == response_id, row.project_id == project_id))
            )
        ).scalar_one_or_none()
        if body is None:
            return None
        return pb.StoredResponse.FromString(body)

    async def StoreResponses(
        self, request: pb.StoreResponsesRequest, context: grpc.aio.ServicerContext
    ) -> pb.StoreResponsesResponse:
        """Stores the valid responses of a batch in one transaction; refuses the invalid ones
        alone (never the batch); skips those already stored."""
        now = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        refused: list[pb.RefusedStoredResponse] = []
        for i, stored in enumerate(request.responses):
            try:
                row = _row(stored, i, now)
            except Exception as err:  # noqa: BLE001  (a ServiceError; or a timestamp out of range)
                refused.append(
                    pb.RefusedStoredResponse(
                        index=i, response_id=stored.response.id, message=getattr(err, "message", str(err))
                    )
                )
                continue
            rows.setdefault(row["id"], row)
        count = 0
        if rows:
            async with self._db.transaction() as session:
                count = await store_responses(session, list(rows.values()))
        return pb.StoreResponsesResponse(stored=count, refused=refused)

    async def GetStoredResponse(
        self, request: pb.GetStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStoredResponseResponse:
        """The project's response; NOT_FOUND when absent, expired or another project's."""
        async with self._db.snapshot() as session:
            stored = await self._load(session, request.project_id, request.response_id)
        if stored is None:
            raise _absent(request.response_id)
        return pb.GetStoredResponseResponse(stored=stored)

    async def DeleteStoredResponse(
        self, request: pb.DeleteStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteStoredResponseResponse:
        """Deletes the project's response; NOT_FOUND when absent or another project's."""
        row = models.StoredResponse
        async with self._db.transaction() as session:
            result = await session.execute(
                self._live(
                    delete(row).where(row.id == request.response_id, row.project_id == request.project_id)
                )
            )
        if not result.rowcount:
            raise _absent(request.response_id)
        return pb.DeleteStoredResponseResponse(deleted=True)

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConversationResponse:
        """The named response and those it continues, oldest first; the walk stops where an
        earlier response is gone (deleted or expired), or after MAX_TURNS."""
        turns: list[pb.StoredResponse] = []
        async with self._db.snapshot() as session:
            response_id = request.response_id
            while response_id and len(turns) < MAX_TURNS:
                stored = await self._load(session, request.project_id, response_id)
                if stored is None:
                    if not turns:
                        raise _absent(request.response_id)
                    break
                turns.append(stored)
                response_id = stored.response.previous_response_id
        turns.reverse()
        return pb.GetConversationResponse(turns=turns)


def _absent(response_id: str) -> Exception:
    return not_found(f"Response with id {echo(response_id)} not found.", param="response_id")


class ResponsePurger:
    """Deletes expired responses every `interval` seconds until `closing` is set."""

    def __init__(self, db: Database, retention_days: int, interval: float) -> None:
        self.db = db
        self.retention_days = retention_days
        self.interval = interval

    async def run(self, closing: asyncio.Event) -> None:
        if self.retention_days <= 0:
            return
        while not closing.is_set():
            try:
                purged = await purge_expired(self.db, self.retention_days)
                if purged:
                    log.info("expired stored responses purged", extra={"purged": purged})
            except Exception:
                log.exception("purging expired stored responses failed; retried next round")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), self.interval)


def binding(db: Database, retention_days: int = 0) -> ServiceBinding:
    """ResponseStoreService, ready for `GrpcServer`."""
    return ServiceBinding(
        servicer=ResponseStoreServicer(db, retention_days),
        add_to_server=response_store_pb2_grpc.add_ResponseStoreServiceServicer_to_server,
        descriptor=pb.DESCRIPTOR.services_by_name["ResponseStoreService"],
    )
