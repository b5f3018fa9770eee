"""The gateway's load reports to the control plane (issue 15, "Replicas and autoscaling", "Scale
to zero"): per deployment, in flight on its engines (a stream until its last byte) per replica,
queued (concurrency slots, cold starts), requests admitted and the last one's arrival; sent every
`load_report_interval` and at once on a deployment's first request after idleness; an app that
answers UNIMPLEMENTED is tolerated. Prompt deployments count their runs (they have no replicas)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from auth import keys
from auth.prompt_run import PROMPT_RUN_KEY, PromptRun, sign
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import response_pb2
from budrt.endpoints import Endpoint
from gateway.concurrency import MemoryConcurrencyLimiter
from gateway.engines import EnginePool
from gateway.load import LoadTracker
from gateway.response_cache import MemoryResponseCache
from gateway.settings import GatewaySettings
from tests.gateway.ops_stack import SECRET, ops_stack, snapshot, wait_for
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"], chunks=40, chunk_delay=0.05)
    yield address, instant
    await server.stop(0)


def _last(double: Any, deployment_id: str = "d1") -> routing_pb2.DeploymentLoad | None:
    loads = double.loads(deployment_id)
    return loads[-1] if loads else None


async def test_a_stream_is_in_flight_until_its_end_per_endpoint(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=False, address=address), key, load_report_interval=0.1) as gw:
        body = {**CHAT, "stream": True}
        async with gw.http.stream("POST", "/v1/chat/completions", json=body) as streamed:
            lines = streamed.aiter_lines()
            assert (await anext(lines)).startswith("data:")
            seen = len(gw.double.reports)
            await wait_for(lambda: len(gw.double.reports) > seen + 1)  # a report made mid-stream
            load = _last(gw.double)
            assert load is not None and (load.in_flight, load.queued, load.requests_total) == (1, 0, 1)
            assert [(e.address, e.served_model_name, e.in_flight) for e in load.endpoints] == [
                (address, "m1", 1)
            ]
            assert abs(load.last_request_time.ToNanoseconds() / 1e9 - time.time()) < 5
            assert gw.double.reports[-1].gateway_id == "gw-test"
            instant.chunk_delay = 0
            async for _ in lines:  # read to its last byte
                pass
        seen = len(gw.double.reports)
        await wait_for(lambda: len(gw.double.reports) > seen + 1)
        load = _last(gw.double)
        assert load is not None and (load.in_flight, load.requests_total) == (0, 1) and not load.endpoints
        assert gw.servicer.engines.in_flight == {}


async def test_a_client_leaving_a_stream_ends_its_in_flight(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=False, address=address), key) as gw:
        async with gw.http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
            lines = streamed.aiter_lines()  # kept: a dropped iterator closes the stream
            await anext(lines)
            assert gw.servicer.load.report().deployments[0].in_flight == 1
        await wait_for(lambda: instant.open_streams == 0)
        (load,) = gw.servicer.load.report().deployments
        assert (load.in_flight, load.requests_total, len(load.endpoints)) == (0, 1, 0)


async def test_the_first_request_after_idleness_is_reported_at_once(
    engine: tuple[str, InstantEngine],
) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    # Reports every 30 s: the one that comes within a second is the first request's.
    async with ops_stack(snapshot(key, cold=False, address=address), key, load_report_interval=30) as gw:
        await asyncio.sleep(0.3)
        assert gw.double.reports == []
        instant_reply = await gw.http.post("/v1/chat/completions", json=CHAT)
        assert instant_reply.status_code == 200
        await wait_for(lambda: gw.double.loads("d1"), timeout=2)
        assert gw.double.loads("d1")[0].requests_total == 1
        # More requests while it is busy are left to the regular report.
        await gw.http.post("/v1/chat/completions", json=CHAT)
        await asyncio.sleep(0.5)
        assert len(gw.double.reports) == 1


async def test_requests_waiting_for_a_slot_or_a_cold_start_are_queued(
    engine: tuple[str, InstantEngine],
) -> None:
    address, instant = engine
    instant.chunk_delay = 0.5  # the stream holds the slot for 20 s, unless its client leaves
    key = keys.mint_key(SECRET)
    limiter = MemoryConcurrencyLimiter(queue_timeout=30)
    first = snapshot(key, cold=False, address=address, max_concurrency=1)
    async with ops_stack(first, key, concurrency=limiter) as gw:
        async with gw.http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
            lines = streamed.aiter_lines()  # kept: a dropped iterator closes the stream
            await anext(lines)  # the stream holds the one slot
            waiting = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(2)]
            await wait_for(lambda: limiter.queued("dep:d1") == 2)
            (load,) = gw.servicer.load.report().deployments
            assert (load.in_flight, load.queued, load.requests_total) == (1, 2, 3)
        assert [(await t).status_code for t in waiting] == [200, 200]
        gw.double.set_cold("d1")
        await wait_for(lambda: not gw.tables.deployments["d1"].serving)
        cold = [asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(3)]
        await wait_for(lambda: gw.cold_starts.queued("d1") == 3)
        (load,) = gw.servicer.load.report().deployments
        assert (load.in_flight, load.queued, load.requests_total) == (0, 3, 6)
        for task in cold:
            task.cancel()


async def test_an_app_without_report_load_is_tolerated(
    engine: tuple[str, InstantEngine], caplog: pytest.LogCaptureFixture
) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    caplog.set_level(logging.WARNING, logger="gateway.control")
    first = snapshot(key, cold=False, address=address)
    async with ops_stack(first, key, load_report_interval=0.05, implemented=False) as gw:
        for _ in range(3):
            assert (await gw.http.post("/v1/chat/completions", json=CHAT)).status_code == 200
            await asyncio.sleep(0.2)  # several reports refused meanwhile
        assert "ReportLoad" in gw.control.unimplemented
        gw.double.implemented = True  # the app is upgraded: the reports get through again
        await wait_for(lambda: gw.double.loads("d1"))
        assert gw.double.loads("d1")[-1].requests_total == 3
    assert len([r for r in caplog.records if "ReportLoad" in r.getMessage()]) == 1


async def test_an_interval_of_zero_sends_nothing(engine: tuple[str, InstantEngine]) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    async with ops_stack(snapshot(key, cold=False, address=address), key, load_report_interval=0) as gw:
        assert (await gw.http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await asyncio.sleep(0.3)
        assert gw.double.reports == []


def test_the_settings_default_to_a_report_every_5_s_and_a_5_minute_cold_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LOAD_REPORT_INTERVAL", "COLD_START_TIMEOUT", "COLD_START_QUEUE_LENGTH"):
        monkeypatch.delenv(f"BUD_{name}", raising=False)
    settings = GatewaySettings()
    assert (settings.load_report_interval, settings.cold_start_timeout) == (5.0, 300.0)
    assert settings.cold_start_queue_length == 100
    with pytest.raises(ValueError):
        GatewaySettings(load_report_interval=-1)


async def test_a_prompt_deployments_runs_are_its_in_flight() -> None:
    tracker = LoadTracker(EnginePool())
    with tracker.run("pd1"):
        (load,) = tracker.report().deployments
        assert (load.deployment_id, load.in_flight, load.requests_total, len(load.endpoints)) == (
            "pd1",
            1,
            1,
            0,
        )
    (load,) = tracker.report().deployments
    assert (load.in_flight, load.requests_total) == (0, 1)


async def test_engine_calls_are_counted_once_by_the_pools_leases() -> None:
    pool = EnginePool()
    tracker = LoadTracker(pool)
    a, b = Endpoint("127.0.0.1:1", "m1"), Endpoint("127.0.0.1:2", "m1")
    conn_a, conn_b = pool.connection(a.address), pool.connection(b.address)
    with pool.lease(conn_a, a, "d1"), pool.lease(conn_a, a, "d1"), pool.lease(conn_b, b, "d1"):
        (load,) = tracker.report().deployments
        assert load.in_flight == 3 and conn_a.outstanding == 2
        assert [(e.address, e.in_flight) for e in load.endpoints] == [(a.address, 2), (b.address, 1)]
    assert pool.in_flight == {} and conn_a.outstanding == 0
    assert list(tracker.report().deployments) == []  # nothing in flight, and never admitted here
    await pool.close()


# ---- a prompt deployment's caching switch (issue 15: "Prompt deployments cache on the rendered
# request") -----------------------------------------------------------------------------------


def _prompt_snapshot(
    key: keys.NewKey, address: str, *, prompt_caching: bool
) -> routing_pb2.WatchRoutingResponse:
    out = snapshot(key, cold=False, address=address)  # chat d1: caching off
    out.upsert_deployments.add(
        id="pd1", project_id="p1", name="greeter", ready=True, prompt_id="pmpt_1", caching=prompt_caching
    )
    return out


def _model_call() -> response_pb2.ResponseRequest:
    """A prompt run's model call: the rendered request, deterministic."""
    request = response_pb2.ResponseRequest(model="chat", temperature=0, store=False)
    request.input_text = "Greet Ada."
    return request


@pytest.mark.parametrize("prompt_caching", [True, False])
async def test_a_prompt_deployments_caching_caches_its_model_calls(
    engine: tuple[str, InstantEngine], prompt_caching: bool
) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    first = _prompt_snapshot(key, address, prompt_caching=prompt_caching)
    async with ops_stack(first, key, response_cache=MemoryResponseCache(60, 1 << 20)) as gw:
        claim = sign(PromptRun("p1", "pmpt_1", 1, "pd1"), SECRET)
        metadata = (*gw.metadata, (PROMPT_RUN_KEY, claim))
        headers = []
        for _ in range(2):
            call = gw.grpc.CreateResponse(_model_call(), metadata=metadata)
            assert (await call).output
            headers.append(dict(await call.initial_metadata()).get("x-bud-cache"))
        if prompt_caching:
            assert headers == ["miss", "hit"] and instant.calls == 1
        else:  # neither the prompt deployment nor the model caches
            assert headers == [None, None] and instant.calls == 2
        # The same request without the claim is the model's own: not cached (its switch is off).
        call = gw.grpc.CreateResponse(_model_call(), metadata=gw.metadata)
        await call
        assert "x-bud-cache" not in dict(await call.initial_metadata())
