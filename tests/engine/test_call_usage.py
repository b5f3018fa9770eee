"""engine/call_usage.py: what vLLM processed for a call, counted from vLLM's own objects — its
`RequestOutput`s (delta and final-only) and, at an abort, the state of a real vLLM
`OutputProcessor` (single requests and parallel sampling) — and kept in a bounded, time-limited
ledger; and the servicer's GetRequestUsage over the fake vLLM for streams cut or cancelled,
unary calls cancelled, and calls that end normally."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.engine import EngineCoreOutput, EngineCoreRequest
from vllm.v1.engine.output_processor import OutputProcessor, RequestOutputCollector
from vllm.v1.engine.parallel_sampling import ParentRequest

from bud.engine.v1 import engine_service_pb2 as pb
from bud.openai.v1 import completion_pb2
from budrt.errors import ServiceError
from budrt.inprocess import LocalContext
from engine import call_usage
from engine.call_usage import USAGE_ID_KEY, CallLedger, Tally
from engine.service import EngineServicer
from tests.engine.fake_vllm import FakeVllm
from tests.engine.test_service import chat, loaded

pytestmark = pytest.mark.unit


def _output(request_id: str, prompt: list[int], choices: list[tuple[int, list[int]]]) -> RequestOutput:
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=prompt,
        prompt_logprobs=None,
        outputs=[
            CompletionOutput(index=i, text="", token_ids=ids, cumulative_logprob=None, logprobs=None)
            for i, ids in choices
        ],
        finished=False,
    )


# ---- counting vLLM's outputs --------------------------------------------------------------------
def test_delta_outputs_add_up_per_choice_and_the_prompt_counts_once() -> None:
    tally = Tally()
    tally.observe("r", _output("r", [1, 2, 3], [(0, [7]), (1, [8, 9])]), delta=True)
    tally.observe("r", _output("r", [1, 2, 3], [(0, [10, 11])]), delta=True)
    assert (tally.prompt_tokens, tally.completion_tokens) == (3, 5)


def test_cumulative_outputs_are_taken_as_they_stand() -> None:
    tally = Tally()
    tally.observe("r", _output("r", [1, 2], [(0, [7, 8])]), delta=False)
    tally.observe("r", _output("r", [1, 2], [(0, [7, 8, 9])]), delta=False)
    assert (tally.prompt_tokens, tally.completion_tokens) == (2, 3)


def test_requests_of_one_call_add_up_and_counts_never_go_down() -> None:
    tally = Tally()
    tally.observe("a", _output("a", [1, 2], [(0, [5, 6])]), delta=True)
    tally.observe("b", _output("b", [1], [(0, [5])]), delta=True)
    tally.at_least("a", 1, 0, 1)  # a lower reading changes nothing
    assert (tally.prompt_tokens, tally.completion_tokens) == (3, 3)
    tally.at_least("a", 2, 0, 9)
    assert tally.completion_tokens == 10


# ---- counting at vLLM's abort (a real OutputProcessor) -----------------------------------------
def _request(request_id: str, kind: RequestOutputKind, n: int = 1) -> EngineCoreRequest:
    return EngineCoreRequest(
        request_id=request_id,
        prompt_token_ids=[1, 2, 3, 4],
        mm_features=None,
        sampling_params=SamplingParams(max_tokens=100, n=n, output_kind=kind, detokenize=False),
        pooling_params=None,
        arrival_time=time.time(),
        lora_request=None,
        cache_salt=None,
        data_parallel_rank=None,
        external_req_id="ext-1",
    )


class _Engine:
    """The part of `AsyncLLM` call_usage wraps: a real output processor and `abort` as vLLM's."""

    def __init__(self) -> None:
        self.output_processor = OutputProcessor(None, log_stats=False)

    async def abort(self, request_id: Any, internal: bool = False) -> None:
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        self.output_processor.abort_requests(ids, internal)


def _step(engine: _Engine, *request_ids: str, token: int = 9) -> None:
    engine.output_processor.process_outputs(
        [EngineCoreOutput(request_id=rid, new_token_ids=[token]) for rid in request_ids]
    )


@pytest.mark.parametrize("kind", [RequestOutputKind.FINAL_ONLY, RequestOutputKind.DELTA])
async def test_an_abort_reads_what_vllm_generated_before_dropping_it(kind: RequestOutputKind) -> None:
    engine = _Engine()
    call_usage.instrument(engine)
    request = _request("int-1", kind)
    engine.output_processor.add_request(request, None, queue=RequestOutputCollector(kind, "int-1"))
    for _ in range(3):
        _step(engine, "int-1")  # final-only: nothing reaches the caller before the end
    tally = Tally()
    engine._bud_call_usage.tallies["ext-1"] = tally  # type: ignore[attr-defined]
    await engine.abort("int-1", internal=True)
    assert (tally.prompt_tokens, tally.completion_tokens) == (4, 3)
    assert "int-1" not in engine.output_processor.request_states  # vLLM's abort still ran


async def test_an_abort_of_parallel_sampling_counts_every_choice_and_the_prompt_once() -> None:
    engine = _Engine()
    call_usage.instrument(engine)
    kind = RequestOutputKind.FINAL_ONLY
    parent_request = _request("int-1", kind, n=3)
    parent = ParentRequest(parent_request)
    queue = RequestOutputCollector(kind, "int-1")
    children = []
    for index in range(3):
        child_id, params = parent.get_child_info(index)
        child = _request(child_id, kind)
        child.sampling_params = params
        engine.output_processor.add_request(child, None, parent, index, queue)
        children.append(child_id)
    _step(engine, *children)
    _step(engine, children[0], children[2])
    tally = Tally()
    engine._bud_call_usage.tallies["ext-1"] = tally  # type: ignore[attr-defined]
    await engine.abort("int-1", internal=True)
    assert (tally.prompt_tokens, tally.completion_tokens) == (4, 5)


async def test_an_engine_without_the_internals_still_aborts(caplog: pytest.LogCaptureFixture) -> None:
    aborted: list[str] = []

    class Bare:
        async def abort(self, request_id: str, internal: bool = False) -> None:
            aborted.append(request_id)

    engine = Bare()
    call_usage.instrument(engine)
    engine._bud_call_usage.tallies["x"] = Tally()  # type: ignore[attr-defined]
    await engine.abort("x", internal=True)
    assert aborted == ["x"] and "lacks the output-processor state" in caplog.text


async def test_generate_and_encode_are_counted_however_vllm_calls_them() -> None:
    """vLLM's chat serving calls `generate` positionally, its pooling serving `encode` by keyword."""

    class Engine:
        async def generate(self, prompt: Any, sampling_params: Any, request_id: str, **_: Any) -> Any:
            yield _output(request_id, [1, 2], [(0, [5])])
            yield _output(request_id, [1, 2], [(0, [6, 7])])

        async def encode(self, prompt: Any, pooling_params: Any, request_id: str, **_: Any) -> Any:
            yield _output(request_id, [1, 2, 3], [])

    engine = Engine()
    call_usage.instrument(engine)
    tally = Tally()
    token = call_usage.current.set(tally)
    try:
        delta = SamplingParams(output_kind=RequestOutputKind.DELTA)
        generated = engine.generate({"prompt_token_ids": [1, 2]}, delta, "g-1")
        encoded = engine.encode(request_id="e-1", prompt={}, pooling_params=None, lora_request=None)
    finally:
        call_usage.current.reset(token)
    assert [o async for o in generated] and [o async for o in encoded]
    assert (tally.prompt_tokens, tally.completion_tokens) == (2 + 3, 3)
    untallied = engine.generate({}, delta, "g-2")  # no call to count: vLLM's own generator
    assert untallied.__qualname__.endswith("Engine.generate")  # type: ignore[attr-defined]
    await untallied.aclose()  # type: ignore[attr-defined]


# ---- the ledger ---------------------------------------------------------------------------------
async def test_the_ledger_keeps_ended_calls_for_its_ttl_and_at_most_max_calls() -> None:
    ledger = CallLedger(ttl=0.2, max_calls=2)
    for name in ("a", "b", "c"):
        ledger.end(name, ledger.begin(name))
    assert await ledger.usage("a") is None  # the oldest went first
    assert await ledger.usage("c") == (0, 0, True)
    await asyncio.sleep(0.3)
    assert await ledger.usage("c") is None and len(ledger) == 0


async def test_the_ledger_waits_briefly_for_a_call_still_running() -> None:
    ledger = CallLedger()
    tally = ledger.begin("a")

    async def finish() -> None:
        await asyncio.sleep(0.05)
        tally.at_least("r", 4, 0, 2)
        ledger.end("a", tally)

    task = asyncio.create_task(finish())
    assert await ledger.usage("a", wait=2.0) == (4, 2, True)
    await task
    ledger.begin("b").at_least("r", 3, 0, 1)
    assert await ledger.usage("b", wait=0.05) == (3, 1, False)  # the counts so far


async def test_a_call_running_long_does_not_keep_ended_ones_from_expiring() -> None:
    ledger = CallLedger(ttl=0.1)
    ledger.begin("long stream")
    for name in ("a", "b"):
        ledger.end(name, ledger.begin(name))
    await asyncio.sleep(0.15)
    ledger.begin("c")
    assert len(ledger) == 2 and await ledger.usage("a", wait=0) is None
    assert await ledger.usage("long stream", wait=0) == (0, 0, False)


# ---- the servicer over the fake vLLM ------------------------------------------------------------
def _context(usage_id: str) -> LocalContext:
    return LocalContext([(USAGE_ID_KEY, usage_id)])


async def _usage(servicer: EngineServicer, usage_id: str) -> pb.GetRequestUsageResponse:
    return await servicer.GetRequestUsage(pb.GetRequestUsageRequest(usage_id=usage_id), None)


async def test_a_stream_closed_midway_keeps_what_was_generated(
    servicer: EngineServicer, fake: FakeVllm, model_dir: Path
) -> None:
    fake.words = [f" w{i}" for i in range(50)]
    await loaded(servicer, model_dir)
    stream = servicer.StreamChatCompletion(chat(stream=True, max_completion_tokens=50), _context("cut-1"))
    received = 0
    async for _ in stream:
        received += 1
        if received == 6:  # the role chunk and five words
            break
    await stream.aclose()
    usage = await _usage(servicer, "cut-1")
    assert usage.ended and usage.prompt_tokens == 4 and 5 <= usage.completion_tokens < 50


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_a_closed_stream_ends_its_call_only_after_vllm_aborted_it(
    servicer: EngineServicer, fake: FakeVllm, model_dir: Path, kind: str
) -> None:
    """The counts read at vLLM's abort belong to the call: the call ends (its counts are fixed)
    after the abort, not when the closed stream's inner generators are garbage collected."""
    fake.words = [f" w{i}" for i in range(50)]
    engine = await loaded(servicer, model_dir)
    aborted_at_end: list[list[str]] = []
    end = servicer.ledger.end

    def watched_end(usage_id: str, tally: Tally) -> None:
        aborted_at_end.append(list(engine.aborted))
        end(usage_id, tally)

    servicer.ledger.end = watched_end  # type: ignore[method-assign]
    if kind == "chat":
        stream = servicer.StreamChatCompletion(chat(stream=True, max_completion_tokens=50), _context("c"))
    else:
        request = completion_pb2.CompletionRequest(model="m", prompt_text="a b", max_tokens=50, stream=True)
        stream = servicer.StreamCompletion(request, _context("c"))
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    assert aborted_at_end == [engine.requests]


async def test_a_cancelled_unary_call_keeps_what_was_generated(
    servicer: EngineServicer, fake: FakeVllm, model_dir: Path
) -> None:
    fake.words = [f" w{i}" for i in range(100)]
    fake.step_delay = 0.01
    await loaded(servicer, model_dir)
    request = chat(max_completion_tokens=100)
    call = asyncio.create_task(servicer.CreateChatCompletion(request, _context("unary-1")))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    usage = await _usage(servicer, "unary-1")
    assert usage.ended and usage.prompt_tokens == 4 and 0 < usage.completion_tokens < 100


async def test_a_finished_call_keeps_its_usage_and_an_unknown_one_is_not_found(
    servicer: EngineServicer, fake: FakeVllm, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    reply = await servicer.CreateChatCompletion(chat(), _context("done-1"))
    usage = await _usage(servicer, "done-1")
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    with pytest.raises(ServiceError) as info:
        await _usage(servicer, "never-sent")
    assert info.value.code.name == "NOT_FOUND"


async def test_a_call_without_a_usage_id_is_not_counted(
    servicer: EngineServicer, fake: FakeVllm, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    await servicer.CreateChatCompletion(chat(), LocalContext([]))
    await servicer.CreateChatCompletion(chat(), _context("bad id with spaces"))
    assert len(servicer.ledger) == 0


def test_gateway_engine_and_instant_engine_name_the_same_metadata() -> None:
    from gateway.engines import USAGE_ID_KEY as GATEWAY_KEY
    from tests.support.instant_engine import USAGE_ID_KEY as INSTANT_KEY

    assert GATEWAY_KEY == USAGE_ID_KEY == INSTANT_KEY
