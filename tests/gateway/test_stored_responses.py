"""Stored responses through the gateway with the real openai SDK: `store` (default true) keeps a
response in the app's database, `retrieve`/`delete`/`input_items.list` read it back, and
`previous_response_id` continues a conversation (the instant engine shows what the model got).
A real app (SQLite and PostgreSQL), the gateway's OpenAI service over HTTP, an instant engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.server import RunningApp, start_app
from app.settings import AppSettings
from auth import keys
from bud.app.v1 import response_store_pb2
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.response_store import ResponseStore
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from gateway.usage_spool import UsageSpool
from tests.gateway.conftest import http_server
from tests.support.instant_engine import InstantEngine, serve_instant_engine
from tests.support.mesh import free_port
from tests.support.postgres import PostgresCluster, postgres_cluster  # noqa: F401  (fixture)

SECRET = "test-hash-secret"


class RecordingEngine(InstantEngine):
    """The instant engine, keeping the chat requests it received (what the model was asked)."""

    def __init__(self, models: list[str]) -> None:
        super().__init__(models)
        self.received: list[chat_pb2.ChatCompletionRequest] = []

    async def CreateChatCompletion(self, request: Any, context: Any) -> Any:
        self.received.append(_copy(request))
        return await super().CreateChatCompletion(request, context)

    async def StreamChatCompletion(self, request: Any, context: Any) -> Any:
        self.received.append(_copy(request))
        async for chunk in super().StreamChatCompletion(request, context):
            yield chunk


def _copy(request: chat_pb2.ChatCompletionRequest) -> chat_pb2.ChatCompletionRequest:
    out = chat_pb2.ChatCompletionRequest()
    out.CopyFrom(request)
    return out


def turns(request: chat_pb2.ChatCompletionRequest) -> list[tuple[str, str]]:
    """The (role, text) of each message the model was asked."""
    return [
        (m.role, m.content_text or "".join(p.text for p in m.content_parts.values)) for m in request.messages
    ]


def _tables(key: keys.NewKey, other: keys.NewKey, engine: str) -> RoutingTables:
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team")
    snapshot.upsert_projects.add(id="p2", name="rivals")
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    snapshot.upsert_keys.add(id="k2", prefix=other.prefix, key_hash=other.key_hash, project_id="p2")
    for dep, project in (("d1", "p1"), ("d2", "p2")):
        snapshot.upsert_deployments.add(id=dep, project_id=project, name="chat", ready=True).endpoints.add(
            address=engine, served_model_name="m1"
        )
    tables.apply(snapshot)
    return tables


@dataclass
class Rig:
    app: RunningApp
    engine: RecordingEngine
    store: ResponseStore
    url: str
    client: openai.AsyncOpenAI
    rival: openai.AsyncOpenAI
    key: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bud.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = AppSettings(
        data_dir=tmp_path / "app",
        database_url=database_url,
        app_address="127.0.0.1:0",
        key_hash_secret=SECRET,
        jwt_secret="test-jwt-secret-of-at-least-32-bytes",
        admin_password="test-admin-password",
        default_model_name="",
        default_embedding_model_name="",
        default_image_model_name="",
    )
    app = await start_app(settings)
    engine = RecordingEngine(["m1"])
    engine_server = await serve_instant_engine(f"127.0.0.1:{free_port()}", engine)
    key, other = keys.mint_key(SECRET), keys.mint_key(SECRET)
    tables = _tables(key, other, f"127.0.0.1:{engine_server.port}")
    # A flush interval no test waits for: what is read before a flush is read from memory.
    store = ResponseStore(
        app.address,
        flush_interval=3600,
        spool=UsageSpool(tmp_path / "response-spool", response_store_pb2.StoredResponse),
    )
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET, response_store=store)
    try:
        async with http_server(build_transcoder(servicer, tables)) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
            rival = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=other.secret, max_retries=0)
            yield Rig(app, engine, store, url, client, rival, key.secret)
    finally:
        await store.close()
        await pool.close()
        await engine_server.stop(0)
        await app.stop(grace=0)


async def test_a_stored_response_is_retrieved_listed_and_deleted(rig: Rig) -> None:
    created = await rig.client.responses.create(
        model="chat", input="hello there", instructions="be brief", metadata={"k": "v"}
    )
    assert created.store is True and created.output_text == "ok"
    await rig.store.flush()
    assert rig.store.pending == 0  # from the database from here on
    got = await rig.client.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()  # the create answer, as it was
    items = await rig.client.responses.input_items.list(created.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "hello there")]
    assert items.first_id == items.last_id == items.data[0].id and items.data[0].id.startswith("msg_")
    assert items.has_more is False
    await rig.client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.input_items.list(created.id)


async def test_a_three_turn_conversation_prepends_the_earlier_turns(rig: Rig) -> None:
    first = await rig.client.responses.create(model="chat", input="one", instructions="sys")
    await rig.store.flush()  # the first turn from the database, the second from memory
    second = await rig.client.responses.create(model="chat", input="two", previous_response_id=first.id)
    third = await rig.client.responses.create(
        model="chat",
        input=[{"role": "user", "content": "three"}],
        previous_response_id=second.id,
        instructions="new sys",
    )
    assert second.previous_response_id == first.id and third.previous_response_id == second.id
    asked = [turns(r) for r in rig.engine.received]
    assert asked[0] == [("system", "sys"), ("user", "one")]
    # Instructions are not carried over (as OpenAI); inputs and outputs are, in order.
    assert asked[1] == [("user", "one"), ("assistant", "ok"), ("user", "two")]
    assert asked[2] == [
        ("system", "new sys"),
        ("user", "one"),
        ("assistant", "ok"),
        ("user", "two"),
        ("assistant", "ok"),
        ("user", "three"),
    ]
    # A turn's input items are its own, not the conversation's.
    items = await rig.client.responses.input_items.list(third.id)
    assert [i.content[0].text for i in items.data] == ["three"]
    await rig.store.flush()
    fourth = await rig.client.responses.create(model="chat", input="four", previous_response_id=third.id)
    assert len(rig.engine.received[-1].messages) == 7 and fourth.store


async def test_read_your_writes_before_the_flush(rig: Rig) -> None:
    created = await rig.client.responses.create(model="chat", input="x")
    assert rig.store.pending == 1  # not flushed: answered from the gateway's memory
    got = await rig.client.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == "ok"
    items = await rig.client.responses.input_items.list(created.id)
    assert len(items.data) == 1
    # Deleted before it was ever flushed: never reaches the database.
    await rig.client.responses.delete(created.id)
    await rig.store.flush()
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.retrieve(created.id)
    kept = await rig.client.responses.create(model="chat", input="y")
    await rig.store.flush()
    async with rig.app.db.snapshot() as session:
        from sqlalchemy import select

        from app.db import models

        ids = (await session.execute(select(models.StoredResponse.id))).scalars().all()
    assert ids == [kept.id]


async def test_store_false_is_neither_retrievable_nor_continued(rig: Rig) -> None:
    created = await rig.client.responses.create(model="chat", input="x", store=False)
    assert created.store is False and rig.store.pending == 0
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as err:
        await rig.client.responses.create(model="chat", input="y", previous_response_id=created.id)
    assert err.value.body["param"] == "response_id" or "not found" in str(err.value)
    # store:false may still continue a stored response; it is itself not kept.
    stored = await rig.client.responses.create(model="chat", input="a")
    follow = await rig.client.responses.create(
        model="chat", input="b", previous_response_id=stored.id, store=False
    )
    assert follow.store is False and len(rig.engine.received[-1].messages) == 3
    with pytest.raises(openai.NotFoundError):
        await rig.client.responses.retrieve(follow.id)


async def test_another_projects_key_gets_404(rig: Rig) -> None:
    created = await rig.client.responses.create(model="chat", input="secret")
    for flushed in (False, True):  # from memory, then from the database
        if flushed:
            await rig.store.flush()
        with pytest.raises(openai.NotFoundError):
            await rig.rival.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await rig.rival.responses.input_items.list(created.id)
        with pytest.raises(openai.NotFoundError):
            await rig.rival.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await rig.rival.responses.create(model="chat", input="z", previous_response_id=created.id)
    assert (await rig.client.responses.retrieve(created.id)).id == created.id  # untouched


async def test_a_streamed_response_is_stored_complete(rig: Rig) -> None:
    stream = await rig.client.responses.create(model="chat", input="tell", stream=True)
    events = [event async for event in stream]
    done = events[-1]
    # The instant engine's streams end by length: the finished response is "incomplete".
    assert done.type == "response.incomplete" and done.response.store is True
    assert events[0].response.store is True
    got = await rig.client.responses.retrieve(done.response.id)  # before the flush
    assert got.status == "incomplete" and got.output_text == "w0 w1 w2 w3 "
    assert got.usage is not None and got.usage.output_tokens == 4
    await rig.store.flush()
    assert (await rig.client.responses.retrieve(done.response.id)).model_dump() == got.model_dump()
    # A streamed continuation of it.
    more = await rig.client.responses.create(
        model="chat", input="more", previous_response_id=done.response.id, stream=True
    )
    final = [event async for event in more][-1].response
    assert final.previous_response_id == done.response.id
    assert turns(rig.engine.received[-1]) == [
        ("user", "tell"),
        ("assistant", "w0 w1 w2 w3 "),
        ("user", "more"),
    ]


async def test_input_items_pagination(rig: Rig) -> None:
    body = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    created = await rig.client.responses.create(model="chat", input=body)
    await rig.store.flush()
    page = await rig.client.responses.input_items.list(created.id, limit=2)  # newest first
    assert [i.content[0].text for i in page.data] == ["m4", "m3"] and page.has_more
    page = await rig.client.responses.input_items.list(created.id, limit=2, after=page.last_id)
    assert [i.content[0].text for i in page.data] == ["m2", "m1"] and page.has_more
    everything = [
        i.content[0].text
        async for i in rig.client.responses.input_items.list(created.id, order="asc", limit=2)
    ]
    assert everything == ["m0", "m1", "m2", "m3", "m4"]
    async with httpx.AsyncClient(base_url=rig.url, headers={"authorization": f"Bearer {rig.key}"}) as http:
        bad = await http.get(f"/v1/responses/{created.id}/input_items", params={"limit": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
        bad = await http.get(f"/v1/responses/{created.id}/input_items", params={"order": "up"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "order"


async def test_responses_survive_an_unreachable_app_and_a_restart(rig: Rig, tmp_path: Path) -> None:
    """Undelivered responses stay readable, spooled, and are delivered by the next gateway."""
    created = await rig.client.responses.create(model="chat", input="durable")
    spool_dir = tmp_path / "response-spool"
    await rig.store.close()  # this gateway stops with the response undelivered: left in the spool
    successor = ResponseStore(rig.app.address, spool=UsageSpool(spool_dir, response_store_pb2.StoredResponse))
    try:
        assert successor.pending == 1
        await successor.flush()
        assert successor.pending == 0
        stored = await successor.get("p1", created.id)
        assert stored.response.id == created.id and stored.api_key_id == "k1"
    finally:
        await successor.close()
    dead = ResponseStore(f"127.0.0.1:{free_port()}")
    dead.put(stored)
    await asyncio.wait_for(dead.flush(), 20)  # the app is unreachable: kept, not lost
    assert dead.pending == 1 and (await dead.get("p1", created.id)).response.id == created.id
    await dead.close()
