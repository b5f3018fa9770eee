"""The gateway's stored-response queue against a scripted app (read-your-writes while a batch is
in flight, a delete racing its batch, conversations across memory and the app) and the
Responses semantics of `gateway.conversation` (stored input items, pages)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from bud.app.v1 import response_store_pb2 as pb
from bud.openai.v1 import response_pb2
from budrt.errors import ServiceError
from gateway import conversation
from gateway.response_store import ResponseStore


def stored(response_id: str, previous: str = "", project: str = "p1") -> pb.StoredResponse:
    response = response_pb2.Response(id=response_id, object="response", store=True)
    if previous:
        response.previous_response_id = previous
    response.output.add(type="message", id=f"msg_{response_id}", role="assistant").content.add(
        type="output_text", text=f"out {response_id}"
    )
    item = response_pb2.ResponseInputItem(type="message", role="user", id=f"in_{response_id}")
    item.content_parts.values.add(type="input_text", text=f"in {response_id}")
    return pb.StoredResponse(project_id=project, response=response, input_items=[item])


class NotFound(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "absent")


class App:
    """A scripted ResponseStoreService: StoreResponses waits for `release`."""

    def __init__(self) -> None:
        self.rows: dict[str, pb.StoredResponse] = {}
        self.release = asyncio.Event()
        self.storing = asyncio.Event()
        self.deleted: list[str] = []

    async def StoreResponses(self, request: pb.StoreResponsesRequest, timeout: float = 0) -> Any:
        self.storing.set()
        await self.release.wait()
        for s in request.responses:
            self.rows.setdefault(s.response.id, s)
        return pb.StoreResponsesResponse(stored=len(request.responses))

    async def DeleteStoredResponse(self, request: Any, timeout: float = 0) -> Any:
        if self.rows.pop(request.response_id, None) is None:
            raise NotFound()
        self.deleted.append(request.response_id)
        return pb.DeleteStoredResponseResponse(deleted=True)

    async def GetStoredResponse(self, request: Any, timeout: float = 0) -> Any:
        row = self.rows.get(request.response_id)
        if row is None or row.project_id != request.project_id:
            raise NotFound()
        return pb.GetStoredResponseResponse(stored=row)

    async def GetConversation(self, request: Any, timeout: float = 0) -> Any:
        turns, rid = [], request.response_id
        while rid in self.rows and self.rows[rid].project_id == request.project_id:
            turns.append(self.rows[rid])
            rid = self.rows[rid].response.previous_response_id
        if not turns:
            raise NotFound()
        return pb.GetConversationResponse(turns=turns[::-1])


def store_with(app: App) -> ResponseStore:
    store = ResponseStore("127.0.0.1:1")
    store._stub = app  # type: ignore[assignment]
    return store


async def test_a_response_in_flight_is_read_and_a_delete_racing_it_wins() -> None:
    app = App()
    store = store_with(app)
    store.put(stored("resp_a"))
    store.put(stored("resp_b"))
    flush = asyncio.create_task(store.flush())
    await app.storing.wait()  # the batch is in flight: neither here nor at the app
    assert (await store.get("p1", "resp_a")).response.id == "resp_a"
    with pytest.raises(ServiceError) as err:
        await store.get("p2", "resp_a")  # another project's: absent
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    await store.delete("p1", "resp_a")
    with pytest.raises(ServiceError):
        await store.get("p1", "resp_a")
    app.release.set()
    await flush
    assert store.pending == 0 and app.deleted == ["resp_a"] and set(app.rows) == {"resp_b"}
    with pytest.raises(ServiceError):
        await store.get("p1", "resp_a")
    assert (await store.get("p1", "resp_b")).response.id == "resp_b"


async def test_a_conversation_spans_the_app_and_the_pending_turns() -> None:
    app = App()
    app.release.set()
    store = store_with(app)
    store.put(stored("resp_1"))
    store.put(stored("resp_2", previous="resp_1"))
    await store.flush()
    store.put(stored("resp_3", previous="resp_2"))
    turns = await store.conversation("p1", "resp_3")
    assert [t.response.id for t in turns] == ["resp_1", "resp_2", "resp_3"]
    items = conversation.history(turns)
    assert [(i.role, i.content_parts.values[0].text) for i in items] == [
        ("user", "in resp_1"),
        ("assistant", "out resp_1"),
        ("user", "in resp_2"),
        ("assistant", "out resp_2"),
        ("user", "in resp_3"),
        ("assistant", "out resp_3"),
    ]
    with pytest.raises(ServiceError):
        await store.conversation("p2", "resp_3")
    with pytest.raises(ServiceError):
        await store.conversation("p1", "resp_nope")
    # An earlier turn deleted at the app ends the conversation there.
    await store.delete("p1", "resp_1")
    assert [t.response.id for t in await store.conversation("p1", "resp_3")] == ["resp_2", "resp_3"]


def test_stored_input_items_have_ids_parts_and_status() -> None:
    request = response_pb2.ResponseRequest(input_text="hello")
    (item,) = conversation.input_items(request)
    assert (item.type, item.role, item.status) == ("message", "user", "completed")
    assert item.id.startswith("msg_") and item.content_parts.values[0].type == "input_text"
    request = response_pb2.ResponseRequest()
    request.input_items.values.add(role="assistant", content_text="before")
    request.input_items.values.add(type="function_call_output", call_id="c1", output="42", id="mine")
    first, second = conversation.input_items(request)
    assert first.content_parts.values[0].type == "output_text" and second.id == "mine"
    assert request.input_items.values[0].content_text == "before"  # the request is left as sent


def test_function_calls_carry_over_as_input_items() -> None:
    response = response_pb2.Response(id="r")
    response.output.add(type="function_call", id="fc_1", call_id="call_1", name="f", arguments="{}")
    (item,) = conversation.output_as_input(response)
    assert (item.type, item.call_id, item.name, item.arguments) == ("function_call", "call_1", "f", "{}")


def _items(n: int) -> list[response_pb2.ResponseInputItem]:
    return [response_pb2.ResponseInputItem(id=f"i{k}") for k in range(n)]


def test_pages_follow_openai() -> None:
    page = conversation.page(_items(25), response_pb2.ListInputItemsRequest())
    assert len(page.data) == 20 and page.first_id == "i24" and page.last_id == "i5" and page.has_more
    page = conversation.page(_items(3), response_pb2.ListInputItemsRequest(order="asc", after="i0"))
    assert [i.id for i in page.data] == ["i1", "i2"] and not page.has_more
    empty = conversation.page([], response_pb2.ListInputItemsRequest())
    assert (empty.object, list(empty.data), empty.first_id, empty.has_more) == ("list", [], "", False)
    for bad, param in (({"limit": 101}, "limit"), ({"order": "x"}, "order"), ({"after": "nope"}, "after")):
        with pytest.raises(ServiceError) as err:
            conversation.page(_items(3), response_pb2.ListInputItemsRequest(**bad))
        assert err.value.param == param
