"""The interceptor chain: a servicer answers the same over gRPC (GrpcServer) and in process
(InProcessService) — results, statuses with details, request ids in the logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from bud.openai.v1 import chat_pb2
from budrt.errors import ServiceError, not_found
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from budrt.inprocess import InProcessService, LocalContext
from budrt.interceptors import MAX_REQUEST_ID_LENGTH, accepted_request_id, request_id
from budrt.logs import setup_logging
from tests.support.mesh import free_port

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]
log = logging.getLogger("tests.budrt.servicer")


class Scripted(engine_service_pb2_grpc.EngineServiceServicer):
    """Does what the request's model names; CreateCompletion is left to the generated base."""

    async def CreateChatCompletion(self, request: Any, context: Any) -> Any:
        await self._act(request.model, context)
        log.info("answered")
        return chat_pb2.ChatCompletion(id=request_id.get(), model=request.model)

    async def StreamChatCompletion(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield chat_pb2.ChatCompletionChunk(id=request_id.get())
        await self._act(request.model, context)
        yield chat_pb2.ChatCompletionChunk(id="second")

    async def _act(self, model: str, context: Any) -> None:
        if model == "missing":
            raise not_found("no such model", reason="MODEL_NOT_FOUND", param="model")
        if model == "crash":
            raise RuntimeError("boom")
        if model == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


Outcome = tuple[Any, ...]
Caller = Callable[[str, str, tuple[tuple[str, str], ...]], Awaitable[Outcome]]


def _outcome_of(err: ServiceError) -> Outcome:
    return ("error", err.code, err.message, err.reason, err.param)


@pytest.fixture(params=["grpc", "in-process"])
async def call(request: pytest.FixtureRequest) -> AsyncIterator[Caller]:
    """Calls a Scripted method by name (unary or streaming) over gRPC or in process; gives the
    response(s) or the error as comparable tuples."""
    servicer = Scripted()
    streaming = {m.name: m.server_streaming for m in ENGINE_SERVICE.methods}
    if request.param == "grpc":
        server = GrpcServer(
            f"127.0.0.1:{free_port()}",
            [
                ServiceBinding(
                    servicer, engine_service_pb2_grpc.add_EngineServiceServicer_to_server, ENGINE_SERVICE
                )
            ],
        )
        await server.start()
        channel = service_channel(server.address)
        stub = engine_service_pb2_grpc.EngineServiceStub(channel)

        async def over_grpc(method: str, model: str, metadata: tuple[tuple[str, str], ...]) -> Outcome:
            req = chat_pb2.ChatCompletionRequest(model=model)
            items: list[Any] = []
            try:
                if streaming[method]:
                    async for item in getattr(stub, method)(req, metadata=metadata):
                        items.append(item.id)
                    return ("ok", *items)
                return ("ok", (await getattr(stub, method)(req, metadata=metadata)).id)
            except grpc.aio.AioRpcError as err:
                return (*items, *_outcome_of(ServiceError.from_rpc_error(err)))

        yield over_grpc
        await channel.close()
        await server.stop(0)
    else:
        service = InProcessService(servicer, ENGINE_SERVICE)

        async def in_process(method: str, model: str, metadata: tuple[tuple[str, str], ...]) -> Outcome:
            req = chat_pb2.ChatCompletionRequest(model=model)
            items: list[Any] = []
            try:
                if streaming[method]:
                    async for item in service.methods[method](req, LocalContext(metadata)):
                        items.append(item.id)
                    return ("ok", *items)
                return ("ok", (await service.methods[method](req, LocalContext(metadata))).id)
            except ServiceError as err:
                return (*items, *_outcome_of(err))

        yield in_process


# The same expectations for both paths: that is the point.
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("m", ("ok", "rid-1")),
        ("missing", ("error", grpc.StatusCode.NOT_FOUND, "no such model", "MODEL_NOT_FOUND", "model")),
        ("abort", ("error", grpc.StatusCode.PERMISSION_DENIED, "not yours", "", "")),
        (
            "crash",
            (
                "error",
                grpc.StatusCode.INTERNAL,
                "internal error in bud.engine.v1.EngineService/CreateChatCompletion",
                "",
                "",
            ),
        ),
    ],
)
async def test_unary_calls_answer_alike_over_grpc_and_in_process(
    call: Caller, model: str, expected: Outcome
) -> None:
    assert await call("CreateChatCompletion", model, (("x-request-id", "rid-1"),)) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("m", ("ok", "rid-2", "second")),
        (
            "missing",
            ("rid-2", "error", grpc.StatusCode.NOT_FOUND, "no such model", "MODEL_NOT_FOUND", "model"),
        ),
        (
            "crash",
            (
                "rid-2",
                "error",
                grpc.StatusCode.INTERNAL,
                "internal error in bud.engine.v1.EngineService/StreamChatCompletion",
                "",
                "",
            ),
        ),
    ],
)
async def test_streams_answer_alike_over_grpc_and_in_process(
    call: Caller, model: str, expected: Outcome
) -> None:
    assert await call("StreamChatCompletion", model, (("x-request-id", "rid-2"),)) == expected


async def test_an_rpc_left_to_the_generated_base_is_unimplemented(call: Caller) -> None:
    outcome = await call("CreateCompletion", "m", ())
    assert outcome[:2] == ("error", grpc.StatusCode.UNIMPLEMENTED)


async def test_a_call_without_a_request_id_gets_a_new_one(call: Caller) -> None:
    first, second = await call("CreateChatCompletion", "m", ()), await call("CreateChatCompletion", "m", ())
    assert first[0] == second[0] == "ok"
    assert len(first[1]) == 32 and first[1] != second[1]
    assert request_id.get() == ""  # nothing leaks into the caller's context


@pytest.mark.parametrize("sent", ["r" * 129, "two words", 'quote"s', "semi;colon", "slash/id"])
async def test_a_request_id_too_long_or_with_odd_characters_is_replaced(call: Caller, sent: str) -> None:
    outcome = await call("CreateChatCompletion", "m", (("x-request-id", sent),))
    assert outcome[0] == "ok" and outcome[1] != sent and len(outcome[1]) == 32


@pytest.mark.parametrize("sent", ["r" * 128, "req_01J:a-b.c", "6f1c0a3e-0b5e-4c1e-9a43-6c1a2f1b9d0e"])
def test_accepted_request_ids_are_kept(sent: str) -> None:
    assert accepted_request_id(sent) == sent and len(sent) <= MAX_REQUEST_ID_LENGTH


async def test_an_unhandled_error_is_logged_with_its_traceback(
    call: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="budrt.interceptors"):
        await call("CreateChatCompletion", "crash", ())
    [record] = [r for r in caplog.records if r.name == "budrt.interceptors"]
    assert "EngineService/CreateChatCompletion" in record.getMessage()
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


async def test_log_lines_inside_a_call_carry_its_request_id(
    call: Caller, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", service="test")
    try:
        await call("CreateChatCompletion", "m", (("x-request-id", "rid-log"),))
        log.info("outside any call")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    answered = [line for line in lines if line["message"] == "answered"]
    assert answered and answered[0]["request_id"] == "rid-log" and answered[0]["service"] == "test"
    assert "request_id" not in next(line for line in lines if line["message"] == "outside any call")


async def test_calls_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """The logging hook wraps a method when DEBUG is on at its first call (and costs nothing when
    it is off); each call then logs its method, outcome and duration."""
    with caplog.at_level(logging.DEBUG, logger="budrt.interceptors"):
        service = InProcessService(Scripted(), ENGINE_SERVICE)
        await service.methods["CreateChatCompletion"](
            chat_pb2.ChatCompletionRequest(model="m"), LocalContext(())
        )
        with pytest.raises(ServiceError):
            await service.methods["CreateChatCompletion"](
                chat_pb2.ChatCompletionRequest(model="missing"), LocalContext(())
            )
    calls = [r for r in caplog.records if r.getMessage() == "rpc"]
    assert [(r.method, r.outcome) for r in calls] == [  # type: ignore[attr-defined]
        ("bud.engine.v1.EngineService/CreateChatCompletion", "OK"),
        ("bud.engine.v1.EngineService/CreateChatCompletion", "ServiceError"),
    ]
    assert all(r.ms >= 0 for r in calls)  # type: ignore[attr-defined]
