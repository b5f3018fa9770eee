"""Budgets enforced by the gateway (gateway/budgets.py): the ledgers (in memory; in a real Redis
shared by gateways), two gateway stacks with concurrent streams never overspending a hard-stop
budget by more than one request's reservation, 429 `budget_exceeded` in OpenAI's error JSON (and
RESOURCE_EXHAUSTED over gRPC), the period's rollover, a raised limit lifting the stop, key budgets,
alert webhooks called once per threshold crossing (a real local HTTP server), and each request's
cost on its usage record."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2, openai_service_pb2_grpc
from budrt.grpc_server import service_channel
from budrt.money import Price
from gateway import budgets as budgets_module
from gateway import transcoder
from gateway.budgets import (
    BudgetEnforcer,
    BudgetEntry,
    Hold,
    MemoryBudgetLedger,
    RedisBudgetLedger,
    period_of,
)
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.request_limits import RequestLimits
from gateway.server import build_transcoder, grpc_face
from gateway.tables import RoutingTables
from gateway.usage import UsageRecorder
from tests.gateway.conftest import http_server
from tests.support.instant_engine import PROMPT_TOKENS, InstantEngine, start_instant_engine
from tests.support.mesh import free_port
from tests.support.redis_server import redis_server

SECRET = "test-hash-secret"
# $1000 per million tokens, in and out: a token costs a millionth of a dollar x 1000 = $0.001.
PRICE = routing_pb2.RoutePricing(
    input_micros_per_million=1_000_000_000, output_micros_per_million=1_000_000_000
)
TOKEN_NANOS = 1_000_000
CHUNKS = 10  # completion tokens of every stream
MAX_TOKENS = 20
STREAM = {
    "model": "chat",
    "messages": [{"role": "user", "content": "x"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": MAX_TOKENS,
}
# What each served stream costs: its prompt and completion tokens.
STREAM_NANOS = (PROMPT_TOKENS + CHUNKS) * TOKEN_NANOS


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def _budget(budget_id: str = "b1", limit_micros: int = 300_000, **fields: Any) -> routing_pb2.RouteBudget:
    fields.setdefault("period", "day")
    fields.setdefault("hard_stop", True)
    fields.setdefault("alert_thresholds", [50, 80, 100])
    return routing_pb2.RouteBudget(id=budget_id, limit_micros=limit_micros, **fields)


def _snapshot(
    key: keys.NewKey, address: str, budgets: list[routing_pb2.RouteBudget], other: keys.NewKey | None = None
) -> routing_pb2.WatchRoutingResponse:
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team", budgets=budgets)
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    if other is not None:
        snapshot.upsert_keys.add(id="k2", prefix=other.prefix, key_hash=other.key_hash, project_id="p1")
    dep = snapshot.upsert_deployments.add(id="d1", project_id="p1", name="chat", ready=True, pricing=PRICE)
    dep.endpoints.add(address=address, served_model_name="m1")
    return snapshot


def _set_budgets(tables: RoutingTables, budgets: list[routing_pb2.RouteBudget], revision: int) -> None:
    update = routing_pb2.WatchRoutingResponse(revision=revision)
    update.upsert_projects.add(id="p1", name="team", budgets=budgets)
    tables.apply(update)


@dataclass
class Stack:
    """One gateway: servicer, tables, REST and gRPC clients."""

    servicer: OpenAiServicer
    tables: RoutingTables
    http: httpx.AsyncClient
    grpc: openai_service_pb2_grpc.OpenAiServiceStub


@contextlib.asynccontextmanager
async def _gateway(
    snapshot: routing_pb2.WatchRoutingResponse, key: keys.NewKey, enforcer: BudgetEnforcer, **kw: Any
) -> AsyncIterator[Stack]:
    tables = RoutingTables()
    tables.apply(snapshot)
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET, budgets=enforcer, **kw)
    grpc_server = grpc_face(servicer, "127.0.0.1:0", RequestLimits(), transcoder.MAX_BODY_BYTES)
    await grpc_server.start()
    headers = {"authorization": f"Bearer {key.secret}"}
    try:
        async with (
            http_server(build_transcoder(servicer, tables)) as url,
            httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http,
            service_channel(f"127.0.0.1:{grpc_server.port}", tls=None) as channel,
        ):
            yield Stack(servicer, tables, http, openai_service_pb2_grpc.OpenAiServiceStub(channel))
    finally:
        await grpc_server.stop(0)
        await pool.close()
        await enforcer.close()


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"], chunks=CHUNKS, chunk_delay=0.02)
    yield address, instant
    await server.stop(0)


async def _stream(gw: Stack, headers: dict[str, str] | None = None) -> tuple[int, int, dict[str, Any] | None]:
    """Streams one chat completion to its end: (status, nano-dollars of its usage, error JSON)."""
    async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM, headers=headers) as response:
        if response.status_code != 200:
            return response.status_code, 0, json.loads(await response.aread())
        cost = 0
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    cost = (usage["prompt_tokens"] + usage["completion_tokens"]) * TOKEN_NANOS
        return 200, cost, None


# ---- the ledgers ---------------------------------------------------------------------------


def test_periods_are_utc_days_and_months() -> None:
    now = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert period_of("day", now) == ("2026-12-31", datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert period_of("month", now) == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert (
        period_of("month", datetime(2026, 2, 10, tzinfo=UTC).timestamp())[1]
        == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    )


def _entry(limit_micros: int = 100, hard_stop: bool = True, **kw: Any) -> BudgetEntry:
    return BudgetEntry(
        kw.get("id", "b"),
        kw.get("api_key_id", ""),
        "day",
        limit_micros,
        kw.get("thresholds", ()),
        hard_stop,
        "",
    )


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_ledger_reserves_until_spent_then_settles(kind: str, redis_url: str) -> None:
    ledger: Any = (
        MemoryBudgetLedger() if kind == "memory" else RedisBudgetLedger(redis_url, prefix=f"t-{kind}:")
    )
    try:
        stop, soft = _entry(limit_micros=100), _entry(limit_micros=10, hard_stop=False, id="soft")
        hold = Hold([stop, soft], ["2026-01-01", "2026-01-01"], 60_000, "p")  # 60 of 100 micros
        assert await ledger.reserve(hold) == -1
        second = Hold([stop, soft], ["2026-01-01", "2026-01-01"], 60_000, "p")
        assert await ledger.reserve(second) == -1  # 60 < 100: admitted, may overshoot by one
        third = Hold([stop, soft], ["2026-01-01", "2026-01-01"], 1, "p")
        assert await ledger.reserve(third) == 0  # the hard-stop budget is spent; the soft one never refuses
        assert await ledger.settle(hold, 10_000) == [10_000, 10_000]  # it cost 10 micros
        assert await ledger.settle(second, 10_000) == [20_000, 20_000]
        assert await ledger.reserve(third) == -1  # 20 of 100 counted now
        # Another period starts from zero.
        assert await ledger.reserve(Hold([stop], ["2026-01-02"], 100_000, "p")) == -1
        assert await ledger.claim("b", "2026-01-01", 50, 60) is True
        assert await ledger.claim("b", "2026-01-01", 50, 60) is False
        assert await ledger.claim("b", "2026-01-01", 80, 60) is True
    finally:
        if kind == "redis":
            await ledger.close()


# ---- the gateway ---------------------------------------------------------------------------


async def test_two_gateways_never_overspend_by_more_than_one_reservation(
    engine: tuple[str, InstantEngine], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateway stacks sharing one Redis, concurrent streams: the served streams' cost passes
    the hard-stop limit by at most one reservation; then every call is refused 429
    `budget_exceeded` (OpenAI JSON; RESOURCE_EXHAUSTED over gRPC) until the day rolls over or the
    limit is raised."""
    address, _ = engine
    key = keys.mint_key(SECRET)
    limit_micros = 300_000  # $0.30: about 20 streams of $0.015
    snapshot = _snapshot(key, address, [_budget(limit_micros=limit_micros)])
    reservations: list[int] = []
    enforcers = [BudgetEnforcer(RedisBudgetLedger(redis_url, prefix="t-two:")) for _ in range(2)]
    for enforcer in enforcers:
        enforcer.on_reject.append(lambda hold: reservations.append(hold.reserved_nanos))
    async with (
        _gateway(snapshot, key, enforcers[0]) as one,
        _gateway(snapshot, key, enforcers[1]) as two,
    ):
        answers = await asyncio.gather(*(_stream(gw) for gw in (one, two) * 25))
        served = [cost for status, cost, _ in answers if status == 200]
        refused = [error for status, _, error in answers if status == 429]
        assert len(served) + len(refused) == 50 and refused
        assert all(cost == STREAM_NANOS for cost in served)
        # The largest reservation a stream makes: its prompt estimate plus max_tokens, at the price.
        request = chat_pb2.ChatCompletionRequest(model="m1", max_tokens=MAX_TOKENS)
        request.messages.add(role="user", content_text="x")
        request.stream_options.include_usage = True
        reservation = (request.ByteSize() // 4 + MAX_TOKENS) * TOKEN_NANOS
        assert reservation > STREAM_NANOS
        spent = sum(served)
        assert spent <= limit_micros * 1000 + reservation
        # Spend until the stop (sequentially, so the count is exact), then everything is refused.
        for _ in range(40):
            status, cost, error = await _stream(one)
            if status == 429:
                break
            spent += cost
        assert limit_micros * 1000 <= spent <= limit_micros * 1000 + reservation
        for gw in (one, two):
            status, _, error = await _stream(gw)
            assert status == 429 and error is not None
            assert error["error"]["code"] == "budget_exceeded"
            assert error["error"]["type"] == "rate_limit_error"
            assert "Budget exceeded" in error["error"]["message"] and "$0.3" in error["error"]["message"]
            refusal = await gw.http.post("/v1/chat/completions", json={**STREAM, "stream": False})
            assert refusal.status_code == 429 and int(refusal.headers["retry-after"]) >= 1
        grpc_request = chat_pb2.ChatCompletionRequest(model="chat")
        grpc_request.messages.add(role="user", content_text="x")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await two.grpc.CreateChatCompletion(
                grpc_request, metadata=(("authorization", f"Bearer {key.secret}"),)
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_details_pb2.ErrorInfo()
        assert rpc_status.from_call(caught.value).details[0].Unpack(info) and info.reason == "BUDGET_EXCEEDED"
        assert reservations  # the rejection hook saw them

        # The next day starts from zero (both gateways)...
        real_time = budgets_module.time.time
        monkeypatch.setattr(budgets_module.time, "time", lambda: real_time() + 86400)
        assert (await _stream(one))[0] == 200 and (await _stream(two))[0] == 200
        monkeypatch.setattr(budgets_module.time, "time", real_time)
        assert (await _stream(two))[0] == 429  # ...today stays spent
        # A raised limit lifts the stop at the next request, on every gateway that has it.
        for revision, gw in enumerate((one, two), start=2):
            _set_budgets(gw.tables, [_budget(limit_micros=limit_micros * 10)], revision)
        assert (await _stream(one))[0] == 200 and (await _stream(two))[0] == 200
        # No budget at all: no stop.
        for revision, gw in enumerate((one, two), start=4):
            _set_budgets(gw.tables, [], revision)
        assert gw.tables.budgets == {}


async def test_a_key_budget_stops_that_key_only_and_soft_budgets_never_stop(
    engine: tuple[str, InstantEngine],
) -> None:
    address, _ = engine
    key, other = keys.mint_key(SECRET), keys.mint_key(SECRET)
    budgets = [
        _budget("bk", limit_micros=1, api_key_id="k1"),  # $0.000001: one request spends it
        _budget("soft", limit_micros=1, hard_stop=False),  # the project's, alert only
    ]
    async with _gateway(_snapshot(key, address, budgets, other), key, BudgetEnforcer()) as gw:
        assert (await _stream(gw))[0] == 200
        assert (await _stream(gw))[0] == 429
        other_key = {"authorization": f"Bearer {other.secret}"}
        assert [(await _stream(gw, other_key))[0] for _ in range(3)] == [200] * 3


async def test_a_request_refused_after_its_reservation_gives_it_back(
    engine: tuple[str, InstantEngine],
) -> None:
    """A request refused after its budget reservation (here: its rate limit) gives it back."""
    address, _ = engine
    key = keys.mint_key(SECRET)
    snapshot = _snapshot(key, address, [_budget(limit_micros=300_000)])
    snapshot.upsert_keys[0].requests_per_minute = 1
    ledger = MemoryBudgetLedger()
    from gateway.ratelimit import MemoryRateLimiter

    async with _gateway(snapshot, key, BudgetEnforcer(ledger), limiter=MemoryRateLimiter()) as gw:
        assert (await _stream(gw))[0] == 200
        assert (await _stream(gw))[0] == 429  # the rate limit
        (counted,) = ledger.counted.values()
        (spent,) = ledger.spent.values()
        assert counted == spent == STREAM_NANOS


async def _webhook_server() -> tuple[Any, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append({"path": scope["path"], **json.loads(body)})
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app, received


async def test_alerts_call_the_webhook_once_per_threshold_across_gateways(
    engine: tuple[str, InstantEngine], redis_url: str
) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    app, received = await _webhook_server()
    alerts: list[Any] = []
    async with http_server(app) as hook_url:
        budget = _budget(
            limit_micros=100_000, webhook_url=f"{hook_url}/alerts", alert_thresholds=[30, 60, 90]
        )
        snapshot = _snapshot(key, address, [budget])
        enforcers = [
            BudgetEnforcer(RedisBudgetLedger(redis_url, prefix="t-alert:"), allow_private_webhooks=True)
            for _ in range(2)
        ]
        for enforcer in enforcers:
            enforcer.on_alert.append(alerts.append)
        async with (
            _gateway(snapshot, key, enforcers[0]) as one,
            _gateway(snapshot, key, enforcers[1]) as two,
        ):
            # $0.015 a stream against $0.10: crossings at $0.03, $0.06, $0.09; then the stop.
            statuses = [(await _stream(gw))[0] for gw in (one, two) * 5]
            assert statuses[:7] == [200] * 7 and 429 in statuses
            await enforcers[0].drain()
            await enforcers[1].drain()
    assert sorted(r["threshold_percent"] for r in received) == [30, 60, 90]
    assert {r["path"] for r in received} == {"/alerts"}
    first = min(received, key=lambda r: r["threshold_percent"])
    assert first["event"] == "budget_alert" and first["budget_id"] == "b1" and first["project_id"] == "p1"
    assert first["limit_usd"] == "0.1" and first["spent_usd"] == "0.030000000" and first["hard_stop"] is True
    assert sorted(a.threshold for a in alerts) == [30, 60, 90]


async def test_a_webhook_at_a_private_address_is_not_called_unless_allowed(
    engine: tuple[str, InstantEngine],
) -> None:
    """Project owners set webhook URLs: by default the gateway does not POST into its own network
    (here: a loopback server that would have received the alert)."""
    address, _ = engine
    key = keys.mint_key(SECRET)
    app, received = await _webhook_server()
    async with http_server(app) as hook_url:
        budget = _budget(limit_micros=10_000, webhook_url=f"{hook_url}/alerts", alert_thresholds=[50])
        enforcer = BudgetEnforcer()
        alerts: list[Any] = []
        enforcer.on_alert.append(alerts.append)
        async with _gateway(_snapshot(key, address, [budget]), key, enforcer) as gw:
            assert (await _stream(gw))[0] == 200
            await enforcer.drain()
    assert [a.threshold for a in alerts] == [50]  # the alert was raised (and logged)...
    assert received == []  # ...but nothing was sent to the private address


async def test_the_usage_record_carries_the_cost(engine: tuple[str, InstantEngine]) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    usage = UsageRecorder("127.0.0.1:1")
    snapshot = _snapshot(key, address, [])
    snapshot.upsert_deployments[0].pricing.request_micros = 5  # $0.000005 a served call
    async with _gateway(snapshot, key, BudgetEnforcer(), usage=usage) as gw:
        assert gw.tables.deployments["d1"].price == Price(1_000_000_000, 1_000_000_000, 5)
        assert (await _stream(gw))[0] == 200
        await gw.servicer.drain()
        (record,) = list(usage._buffer)
        assert record.cost_usd == "0.015005000"
