"""Cold starts in the gateway (issue 15, "Scale to zero and cold start"): a request for a
deployment scaled to zero wakes it (one WakeDeployment however many wait) and waits in a bounded
queue until the routing watch shows it ready, then is served (a stream streams); a full queue, a
timeout or a failed start is 503 with Retry-After; a client leaving frees its place; a cache hit
answers without waking; `/v1/models` still lists the deployment; the app answering UNIMPLEMENTED
is tolerated. Driven through the real routing watch against a RoutingService double."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2
from gateway.cold_start import COLD_START_RETRY_AFTER_S
from gateway.response_cache import MemoryResponseCache
from gateway.tables import RoutingTables
from tests.gateway.ops_stack import SECRET, ops_stack, snapshot, wait_for
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"], chunks=4, chunk_delay=0.01)
    yield address, instant
    await server.stop(0)


def _endpoint(address: str) -> routing_pb2.RouteEndpoint:
    return routing_pb2.RouteEndpoint(address=address, served_model_name="m1")


def _grpc_chat() -> chat_pb2.ChatCompletionRequest:
    request = chat_pb2.ChatCompletionRequest(model="chat")
    request.messages.add(role="user", content_text="x")
    return request


async def test_requests_during_a_cold_start_all_succeed_with_one_wake(
    engine: tuple[str, InstantEngine],
) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, ready_endpoint=_endpoint(address)) as gw:

        async def streamed() -> tuple[int, str]:
            async with gw.http.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as answer:
                return answer.status_code, "".join([line async for line in answer.aiter_lines()])

        unary = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(5)]
        stream = asyncio.create_task(streamed())
        over_grpc = asyncio.ensure_future(gw.grpc.CreateChatCompletion(_grpc_chat(), metadata=gw.metadata))
        # All seven wait for the one wake; nothing reached the engine.
        await wait_for(lambda: gw.cold_starts.queued("d1") == 7)
        await wait_for(lambda: len(gw.double.wakes) == 1)
        await asyncio.sleep(0.2)  # time for more wakes, if any were to be made
        assert [w.deployment_id for w in gw.double.wakes] == ["d1"] and gw.double.wakes[
            0
        ].gateway_id == "gw-test"
        assert instant.calls == 0 and not any(t.done() for t in (*unary, stream, over_grpc))
        gw.double.set_ready("d1")  # the model loaded: the routing watch brings it
        answers = await asyncio.gather(*unary)
        assert [a.status_code for a in answers] == [200] * 5
        assert all(a.json()["choices"][0]["message"]["content"] for a in answers)
        status, text = await stream
        assert status == 200 and text.count("data:") >= 4 and text.rstrip().endswith("[DONE]")
        assert (await over_grpc).choices[0].message.content
        assert gw.cold_starts.queued("d1") == 0 and len(gw.double.wakes) == 1
        # Up now: the next request neither waits nor wakes.
        assert (await gw.http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert len(gw.double.wakes) == 1


async def test_the_control_plane_loading_on_its_own_time_serves_the_waiters(
    engine: tuple[str, InstantEngine],
) -> None:
    """The double publishes the deployment ready 0.3 s after the wake, as the reconciler does."""
    address, _ = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, ready_endpoint=_endpoint(address)) as gw:
        gw.double.ready_after = 0.3
        answers = await asyncio.gather(*(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(3)))
        assert [a.status_code for a in answers] == [200] * 3 and len(gw.double.wakes) == 1


async def test_a_wait_past_the_timeout_is_503_with_retry_after() -> None:
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, cold_start_timeout=0.3) as gw:
        refused = await gw.http.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) == COLD_START_RETRY_AFTER_S
        error = refused.json()["error"]
        assert error["code"] == "cold_start_timeout" and "did not start within 0.3s" in error["message"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.grpc.CreateChatCompletion(_grpc_chat(), metadata=gw.metadata)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        details = rpc_status.from_call(caught.value).details
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert details[0].Unpack(info) and info.reason == "COLD_START_TIMEOUT"
        assert details[1].Unpack(retry) and retry.retry_delay.seconds == COLD_START_RETRY_AFTER_S
        assert gw.cold_starts.queued("d1") == 0


async def test_a_full_queue_is_503_at_once() -> None:
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, cold_start_queue_length=2) as gw:
        waiting = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(2)]
        await wait_for(lambda: gw.cold_starts.queued("d1") == 2)
        refused = await gw.http.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503 and refused.headers["retry-after"] == str(COLD_START_RETRY_AFTER_S)
        assert refused.json()["error"]["code"] == "cold_start_queue_full"
        assert not any(t.done() for t in waiting)  # the two in the queue keep their places
        for task in waiting:
            task.cancel()


async def test_a_client_leaving_frees_its_place(engine: tuple[str, InstantEngine]) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(
        snapshot(key, cold=True), key, cold_start_queue_length=1, ready_endpoint=_endpoint(address)
    ) as gw:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while the model loads
            await gw.http.post("/v1/chat/completions", json=CHAT, timeout=0.3)
        await wait_for(lambda: gw.cold_starts.queued("d1") == 0)  # its place is free again
        later = asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT))
        await wait_for(lambda: gw.cold_starts.queued("d1") == 1)  # queued, not refused
        gw.double.set_ready("d1")
        assert (await later).status_code == 200


async def test_a_deployment_failing_to_start_refuses_its_waiters() -> None:
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key) as gw:
        waiting = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(3)]
        await wait_for(lambda: gw.cold_starts.queued("d1") == 3)
        gw.double.set_cold("d1", cold_start=False)  # FAILED: neither ready nor coming up
        answers = await asyncio.gather(*waiting)
        assert [a.status_code for a in answers] == [503] * 3
        assert {a.json()["error"]["code"] for a in answers} == {"cold_start_failed"}
        assert all(a.headers["retry-after"] == str(COLD_START_RETRY_AFTER_S) for a in answers)
        # A deployment neither ready nor cold is refused at once as not ready, as before.
        plain = await gw.http.post("/v1/chat/completions", json=CHAT)
        assert plain.status_code == 503 and plain.json()["error"]["code"] == "model_not_ready"


async def test_a_cache_hit_answers_without_waking(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    first = snapshot(key, cold=False, address=address, caching=True)
    async with ops_stack(first, key, response_cache=MemoryResponseCache(60, 1 << 20)) as gw:
        body = {**CHAT, "temperature": 0}
        miss = await gw.http.post("/v1/chat/completions", json=body)
        assert miss.status_code == 200 and miss.headers["x-bud-cache"] == "miss"
        gw.double.set_cold("d1")  # scaled to zero since
        await wait_for(lambda: not gw.tables.deployments["d1"].serving)
        hit = await gw.http.post("/v1/chat/completions", json=body)
        assert hit.status_code == 200 and hit.headers["x-bud-cache"] == "hit"
        assert hit.json()["choices"] == miss.json()["choices"]
        assert gw.double.wakes == [] and instant.calls == 1
        # Another request is a miss: it wakes the deployment and waits.
        other = asyncio.create_task(gw.http.post("/v1/chat/completions", json={**body, "seed": 7}))
        await wait_for(lambda: len(gw.double.wakes) == 1)
        gw.double.set_ready("d1", _endpoint(address))
        assert (await other).status_code == 200


async def test_models_still_lists_a_deployment_scaled_to_zero() -> None:
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key) as gw:
        listed = await gw.http.get("/v1/models")
        assert listed.status_code == 200 and [m["id"] for m in listed.json()["data"]] == ["chat"]
        assert (await gw.http.get("/v1/models/chat")).json()["id"] == "chat"
        assert gw.double.wakes == []  # listing wakes nothing


async def test_an_app_without_wake_deployment_is_tolerated(
    engine: tuple[str, InstantEngine], caplog: pytest.LogCaptureFixture
) -> None:
    """Before the control plane implements WakeDeployment it answers UNIMPLEMENTED: logged once,
    not asked again for this wait; the requests still wait for the tables."""
    address, _ = engine
    key = keys.mint_key(SECRET)
    caplog.set_level(logging.WARNING, logger="gateway.control")
    async with ops_stack(
        snapshot(key, cold=True), key, implemented=False, ready_endpoint=_endpoint(address)
    ) as gw:
        waiting = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(3)]
        await wait_for(lambda: "WakeDeployment" in gw.control.unimplemented)
        await asyncio.sleep(0.7)  # longer than the wake's retry delay: no second call
        assert gw.cold_starts.wake_calls == 1
        gw.double.set_ready("d1")
        assert [(await t).status_code for t in waiting] == [200] * 3
    warnings = [r for r in caplog.records if "WakeDeployment" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_wake_that_fails_is_asked_again_while_requests_wait(
    engine: tuple[str, InstantEngine],
) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, ready_endpoint=_endpoint(address)) as gw:
        gw.double.fail_wakes = 1  # the first call does not get through
        gw.double.ready_after = 0.1
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200 and len(gw.double.wakes) == 2


async def test_a_stream_over_grpc_streams_once_the_model_is_up(engine: tuple[str, InstantEngine]) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=True), key, ready_endpoint=_endpoint(address)) as gw:
        gw.double.ready_after = 0.2
        chunks = [c async for c in gw.grpc.StreamChatCompletion(_grpc_chat(), metadata=gw.metadata)]
        assert len(chunks) >= 4 and len(gw.double.wakes) == 1


def test_a_deployment_scaled_to_zero_keeps_its_last_served_names() -> None:
    """The response cache keys on the replicas' served names: a deployment that has none while
    scaled to zero keeps its last ones (through a resumed change or a new snapshot alike), so its
    entries answer without a wake; a deployment that is merely not ready does not."""
    key = keys.mint_key(SECRET)
    tables = RoutingTables()
    tables.apply(snapshot(key, cold=False, address="127.0.0.1:1"))
    assert tables.deployments["d1"].served_names == ("m1",)
    for reset in (False, True):
        update = snapshot(key, cold=True)
        update.reset, update.revision = reset, tables.revision + 1
        tables.apply(update)
        entry = tables.deployments["d1"]
        assert (entry.serving, entry.cold_start, entry.served_names) == (False, True, ("m1",))
    failed = snapshot(key, cold=True)
    failed.upsert_deployments[0].cold_start = False
    failed.revision = tables.revision + 1
    tables.apply(failed)
    assert tables.deployments["d1"].served_names == ()
