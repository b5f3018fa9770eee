"""ResponseStoreService: stored responses per project (idempotent batches, invalid ones refused
alone), reads by project only, conversations walked back, retention (absent at once, purged by the
periodic task), the service-identity policy, and the upgrade from 0006 with data in place."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select, text

from app.db import models
from app.db.migrate import upgrade_database
from app.db.session import Database
from app.server import RunningApp
from app.services.responses_store import purge_expired
from auth.service_identity import allowed_callers
from bud.app.v1 import response_store_pb2 as pb
from bud.app.v1 import response_store_pb2_grpc
from bud.openai.v1 import response_pb2
from budrt.grpc_server import service_channel
from tests.app.conftest import eventually, expect_error


def stored(
    response_id: str,
    project: str = "p1",
    previous: str = "",
    created: float | None = None,
    text_in: str = "hi",
) -> pb.StoredResponse:
    response = response_pb2.Response(
        id=response_id,
        object="response",
        created_at=int(created or time.time()),
        status="completed",
        store=True,
    )
    if previous:
        response.previous_response_id = previous
    response.output.add(type="message", id=f"msg_{response_id}", role="assistant").content.add(
        type="output_text", text=f"answer {response_id}"
    )
    item = response_pb2.ResponseInputItem(type="message", role="user", id=f"in_{response_id}")
    item.content_parts.values.add(type="input_text", text=text_in)
    return pb.StoredResponse(project_id=project, api_key_id="k1", response=response, input_items=[item])


@pytest.fixture
async def store(app: RunningApp) -> Any:
    channel = service_channel(app.address)
    yield response_store_pb2_grpc.ResponseStoreServiceStub(channel)
    await channel.close()


async def _count(db: Database) -> int:
    async with db.snapshot() as session:
        return int(
            (await session.execute(select(func.count()).select_from(models.StoredResponse))).scalar_one()
        )


async def test_store_is_idempotent_and_reads_are_per_project(store: Any, app: RunningApp) -> None:
    batch = [stored("resp_a"), stored("resp_b", previous="resp_a"), stored("resp_a")]
    reply = await store.StoreResponses(pb.StoreResponsesRequest(responses=batch))
    assert reply.stored == 2 and not reply.refused
    again = await store.StoreResponses(pb.StoreResponsesRequest(responses=batch[:2]))
    assert again.stored == 0  # a resent batch is harmless
    got = (
        await store.GetStoredResponse(pb.GetStoredResponseRequest(project_id="p1", response_id="resp_b"))
    ).stored
    assert got == batch[1]
    for call, request in (
        (store.GetStoredResponse, pb.GetStoredResponseRequest(project_id="p2", response_id="resp_b")),
        (store.DeleteStoredResponse, pb.DeleteStoredResponseRequest(project_id="p2", response_id="resp_b")),
        (store.GetConversation, pb.GetConversationRequest(project_id="p2", response_id="resp_b")),
        (store.GetStoredResponse, pb.GetStoredResponseRequest(project_id="p1", response_id="resp_zzz")),
    ):
        await expect_error(call(request), grpc.StatusCode.NOT_FOUND, "response_id")
    assert await _count(app.db) == 2  # another project's delete touched nothing
    conversation = await store.GetConversation(
        pb.GetConversationRequest(project_id="p1", response_id="resp_b")
    )
    assert [t.response.id for t in conversation.turns] == ["resp_a", "resp_b"]
    deleted = await store.DeleteStoredResponse(
        pb.DeleteStoredResponseRequest(project_id="p1", response_id="resp_a")
    )
    assert deleted.deleted
    await expect_error(
        store.DeleteStoredResponse(pb.DeleteStoredResponseRequest(project_id="p1", response_id="resp_a")),
        grpc.StatusCode.NOT_FOUND,
    )
    # A deleted earlier turn ends the conversation there.
    conversation = await store.GetConversation(
        pb.GetConversationRequest(project_id="p1", response_id="resp_b")
    )
    assert [t.response.id for t in conversation.turns] == ["resp_b"]


async def test_invalid_responses_are_refused_alone(store: Any, app: RunningApp) -> None:
    batch = [stored(""), stored("resp_ok"), stored("resp_x" * 20), stored("resp_np", project="")]
    reply = await store.StoreResponses(pb.StoreResponsesRequest(responses=batch))
    assert reply.stored == 1
    assert [(r.index, r.response_id) for r in reply.refused] == [(0, ""), (2, "resp_x" * 20), (3, "resp_np")]
    assert all(r.message for r in reply.refused)


async def test_retention_hides_then_purges_expired_responses(start: Any) -> None:
    app = await start(response_retention_days=7, response_purge_interval=0.1)
    channel = service_channel(app.address)
    store = response_store_pb2_grpc.ResponseStoreServiceStub(channel)
    try:
        old = time.time() - 8 * 86400
        reply = await store.StoreResponses(
            pb.StoreResponsesRequest(responses=[stored("resp_old", created=old), stored("resp_new")])
        )
        assert reply.stored == 2
        await expect_error(
            store.GetStoredResponse(pb.GetStoredResponseRequest(project_id="p1", response_id="resp_old")),
            grpc.StatusCode.NOT_FOUND,
        )

        async def purged() -> bool:
            return await _count(app.db) == 1

        await eventually(purged, what="the periodic purge")  # the app's own task
        got = await store.GetStoredResponse(
            pb.GetStoredResponseRequest(project_id="p1", response_id="resp_new")
        )
        assert got.stored.response.id == "resp_new"
    finally:
        await channel.close()


async def test_purge_keeps_everything_when_retention_is_zero(start: Any) -> None:
    # The app keeps everything (retention 0), so its own periodic purge cannot race the calls below.
    app = await start(response_retention_days=0)
    channel = service_channel(app.address)
    store = response_store_pb2_grpc.ResponseStoreServiceStub(channel)
    try:
        await _purge_by_hand(app, store)
    finally:
        await channel.close()


async def _purge_by_hand(app: RunningApp, store: Any) -> None:
    await store.StoreResponses(pb.StoreResponsesRequest(responses=[stored("resp_a", created=1_000_000)]))
    assert await purge_expired(app.db, 0) == 0
    assert await purge_expired(app.db, 1, now=datetime.now(UTC)) == 1
    await store.StoreResponses(pb.StoreResponsesRequest(responses=[stored("resp_b")]))
    assert await purge_expired(app.db, 1, now=datetime.now(UTC) + timedelta(hours=1)) == 0


def test_only_gateways_may_call_the_store() -> None:
    for method in ("StoreResponses", "GetStoredResponse", "DeleteStoredResponse", "GetConversation"):
        assert allowed_callers(f"bud.app.v1.ResponseStoreService/{method}") == {"gateway"}


async def test_upgrade_from_0006_keeps_the_data_and_stores_responses(database_url: str, start: Any) -> None:
    """A database at 0006 with a project in it: upgraded at start, the project is intact and
    responses of it are stored."""
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await upgrade_database(db, "0006")
        async with db.write_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO projects (id, name, description, create_time, update_time) "
                    "VALUES ('prj_old', 'legacy', 'from 0006', :now, :now)"
                ),
                {"now": now},
            )
    finally:
        await db.dispose()
    app = await start()
    async with app.db.snapshot() as session:
        project = await session.get(models.Project, "prj_old")
        assert project is not None and project.description == "from 0006"
    channel = service_channel(app.address)
    store = response_store_pb2_grpc.ResponseStoreServiceStub(channel)
    try:
        reply = await store.StoreResponses(
            pb.StoreResponsesRequest(responses=[stored("resp_1", project="prj_old")])
        )
        assert reply.stored == 1
        got = await store.GetStoredResponse(
            pb.GetStoredResponseRequest(project_id="prj_old", response_id="resp_1")
        )
        assert got.stored.input_items[0].content_parts.values[0].text == "hi"
    finally:
        await channel.close()
