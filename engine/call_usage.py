"""What vLLM processed for each inference call, kept for a while after the call ends, so that a
gateway can charge a call whose usage never reached it (cancelled by its client, or failed) with
the engine's own counts (`GetRequestUsage`).

A call that carries the `x-bud-usage-id` metadata gets a :class:`Tally` for its lifetime
(`CallLedger.begin`). Its counts come from vLLM itself, two ways:

- **the outputs**: `instrument` wraps the model's `AsyncLLM.generate` / `encode`, so every
  `RequestOutput` the serving objects read is counted: `prompt_token_ids` (plus the encoder's)
  per vLLM request, the `token_ids` of each choice (added for delta outputs, streams; taken as
  they stand for cumulative and final-only ones, unary calls);
- **the abort**: a unary call's outputs are final-only, so a cancelled one yielded none; and a
  stream's last tokens may still wait in vLLM's queue. `instrument` also wraps `AsyncLLM.abort`
  (which vLLM's `generate` calls when its caller goes away or fails) to read, before the request
  state is dropped, what vLLM's output processor holds for it: the prompt length and the tokens
  each choice has generated (`RequestState.prompt_len`, `detokenizer.num_output_tokens()`, and a
  parallel-sampling parent's finished children). That reads vLLM internals, looked up once per
  engine: a vLLM without them logs a warning and counts the outputs only.

A call ends (and its counts are fixed) only after its vLLM requests have ended: `close_open`
closes those still open, since vLLM's completion stream leaves its engine generator to the
garbage collector when it is closed itself.

Counts only ever grow (a choice's count is the largest either way gave), so a call is never
charged below what vLLM reported. The prompt of a request vLLM accepted counts whole, as vLLM's own
usage counts it, also when the request was aborted before its prefill ended.

Not counted: the steps of a beam search (vLLM starts their requests while its stream is read,
after the call's tally stopped being current); such a call is charged the tokens the gateway
saw streamed.

The ledger keeps ended calls' counts `ttl` seconds and at most `max_calls` of them (the oldest go
first): a gateway asks right after the call ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# The metadata naming a call's counts (the gateway sends a new id per request; the contract:
# EngineService.GetRequestUsage in proto/bud/engine/v1/engine_service.proto).
USAGE_ID_KEY = "x-bud-usage-id"
DEFAULT_TTL_S = 60.0
DEFAULT_MAX_CALLS = 100_000
# How long GetRequestUsage waits for a call that has not ended yet (its abort is under way).
DEFAULT_WAIT_S = 1.0

# The tally of the call being served, read when vLLM's generate/encode is called (in the
# servicer's own flow, before any output is read).
current: ContextVar[Tally | None] = ContextVar("engine_call_tally", default=None)


@dataclass
class Tally:
    """The tokens vLLM processed for one call: prompt tokens per vLLM request, generated tokens
    per (vLLM request, choice index)."""

    prompts: dict[str, int] = field(default_factory=dict)
    generated: dict[tuple[str, int], int] = field(default_factory=dict)
    # The call's vLLM output generators not yet finished or closed (see `close_open`).
    open: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompts.values())

    @property
    def completion_tokens(self) -> int:
        return sum(self.generated.values())

    def at_least(self, request_id: str, prompt: int, index: int | None = None, tokens: int = 0) -> None:
        """Raises the counts of `request_id` (and of its choice `index`) to these, never lowers them."""
        if prompt > self.prompts.get(request_id, 0):
            self.prompts[request_id] = prompt
        if index is not None and tokens > self.generated.get((request_id, index), 0):
            self.generated[(request_id, index)] = tokens

    def observe(self, request_id: str, output: Any, delta: bool) -> None:
        """Counts one `RequestOutput` (or `PoolingRequestOutput`) of vLLM request `request_id`;
        `delta`: its choices carry only the tokens new since the last output."""
        prompt = len(output.prompt_token_ids or ())
        encoder = getattr(output, "encoder_prompt_token_ids", None)
        if encoder is not None:
            prompt += len(encoder)
        self.at_least(request_id, prompt)
        choices = output.outputs
        if not isinstance(choices, list):  # a pooling output: no generated tokens
            return
        for choice in choices:
            key = (request_id, choice.index)
            tokens = len(choice.token_ids or ())
            if delta:
                self.generated[key] = self.generated.get(key, 0) + tokens
            elif tokens > self.generated.get(key, 0):
                self.generated[key] = tokens


class _Call:
    """One call in the ledger: its live tally while it runs, its two counts once it has ended
    (an ended call costs a few hundred bytes)."""

    __slots__ = ("counts", "ended_at", "tally", "waiters")

    def __init__(self, tally: Tally) -> None:
        self.tally: Tally | None = tally
        self.counts = (0, 0)
        self.ended_at = 0.0
        self.waiters: asyncio.Event | None = None  # made when someone waits for the end

    @property
    def ended(self) -> bool:
        return self.tally is None

    def end(self) -> None:
        assert self.tally is not None
        self.counts = (self.tally.prompt_tokens, self.tally.completion_tokens)
        self.tally = None
        self.ended_at = time.monotonic()
        if self.waiters is not None:
            self.waiters.set()

    def current(self) -> tuple[int, int]:
        if self.tally is None:
            return self.counts
        return self.tally.prompt_tokens, self.tally.completion_tokens


class CallLedger:
    """The tallies of running calls and the counts of calls ended within `ttl` seconds, by usage
    id; at most `max_calls` of them (the oldest go first)."""

    def __init__(self, ttl: float = DEFAULT_TTL_S, max_calls: int = DEFAULT_MAX_CALLS) -> None:
        self.ttl = ttl
        self.max_calls = max_calls
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def begin(self, usage_id: str) -> Tally:
        """A new tally for the call named `usage_id` (a reused id starts afresh)."""
        self._expire()
        tally = Tally()
        self._calls.pop(usage_id, None)
        self._calls[usage_id] = _Call(tally)
        while len(self._calls) > self.max_calls:
            self._calls.popitem(last=False)
        return tally

    def end(self, usage_id: str, tally: Tally) -> None:
        """Marks the call ended; its counts are kept `ttl` seconds from now."""
        call = self._calls.get(usage_id)
        if call is None or call.tally is not tally:
            return  # evicted, or the id was reused by a later call
        call.end()
        self._calls.move_to_end(usage_id)

    async def usage(self, usage_id: str, wait: float = DEFAULT_WAIT_S) -> tuple[int, int, bool] | None:
        """(prompt tokens, completion tokens, whether the call has ended) of `usage_id`, waiting
        up to `wait` seconds for a running call to end; None when unknown."""
        self._expire()
        call = self._calls.get(usage_id)
        if call is None:
            return None
        if not call.ended:
            if call.waiters is None:
                call.waiters = asyncio.Event()
            try:
                await asyncio.wait_for(call.waiters.wait(), wait)
            except TimeoutError:
                pass
        return (*call.current(), call.ended)

    def _expire(self) -> None:
        """Drops the calls that ended more than `ttl` seconds ago (ended calls are in the order
        they ended; a running call met at the front goes to the back, it is not expired)."""
        horizon = time.monotonic() - self.ttl
        running_seen = 0
        while self._calls and running_seen < len(self._calls):
            usage_id, call = next(iter(self._calls.items()))
            if not call.ended:
                self._calls.move_to_end(usage_id)
                running_seen += 1
            elif call.ended_at <= horizon:
                self._calls.popitem(last=False)
            else:
                break


# ---- vLLM instrumentation ----------------------------------------------------------------------
def _is_delta(params: Any) -> bool:
    """Whether vLLM yields delta outputs for these sampling/pooling params (streams)."""
    kind = getattr(params, "output_kind", None)
    return kind is None or getattr(kind, "name", "") == "DELTA"


def _snapshot(
    output_processor: Any, request_ids: list[str], internal: bool
) -> list[tuple[str, int, int, int]]:
    """(external request id, prompt tokens, choice index, tokens generated) of each request of
    `request_ids` as vLLM's output processor holds them now (before an abort drops them)."""
    states = output_processor.request_states
    parents = output_processor.parent_requests
    found: list[tuple[str, int, int, int]] = []
    for request_id in request_ids:
        internal_ids = (
            [request_id] if internal else list(output_processor.external_req_ids.get(request_id, ()))
        )
        for rid in internal_ids:
            state = states.get(rid)
            children: list[Any] = [state] if state is not None else []
            parent = parents.get(rid)
            if parent is not None:
                children += [states[c] for c in parent.child_requests if c in states]
                # Final-only parallel sampling keeps its finished choices here, out of the states.
                for index, done in enumerate(getattr(parent, "output_aggregator", ()) or ()):
                    if done is not None:
                        found.append((parent.external_req_id, 0, index, len(done.token_ids or ())))
            for child in children:
                detokenizer = child.detokenizer
                generated = detokenizer.num_output_tokens() if detokenizer is not None else 0
                found.append((child.external_req_id, child.prompt_len or 0, child.request_index, generated))
    return found


class _Instrumented:
    """The tallies of the vLLM requests in flight on one engine, by vLLM's (external) request id."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tallies: dict[str, Tally] = {}
        processor = getattr(engine, "output_processor", None)
        self.reads_aborts = all(
            hasattr(processor, name) for name in ("request_states", "parent_requests", "external_req_ids")
        )
        if not self.reads_aborts:
            log.warning(
                "this vLLM's engine lacks the output-processor state read at an abort; a cancelled "
                "call is charged the tokens of the outputs it read only"
            )

    def wrap_stream(
        self, original: Callable[..., AsyncIterator[Any]], params_name: str
    ) -> Callable[..., AsyncIterator[Any]]:
        """`generate` (params_name "sampling_params") or `encode` ("pooling_params"), counted;
        vLLM's serving objects call them positionally or by keyword."""

        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            tally = current.get()
            outputs = original(*args, **kwargs)
            if tally is None:
                return outputs  # a call nobody will ask about: untouched
            params = args[1] if len(args) > 1 else kwargs.get(params_name)
            request_id = args[2] if len(args) > 2 else kwargs.get("request_id")
            if not isinstance(request_id, str):
                return outputs
            return self._counted(outputs, tally, request_id, _is_delta(params))

        return call

    def _counted(
        self, outputs: AsyncIterator[Any], tally: Tally, request_id: str, delta: bool
    ) -> AsyncIterator[Any]:
        counted = self._count(outputs, tally, request_id, delta)
        tally.open[request_id] = counted
        return counted

    async def _count(
        self, outputs: AsyncIterator[Any], tally: Tally, request_id: str, delta: bool
    ) -> AsyncIterator[Any]:
        self.tallies[request_id] = tally
        try:
            async for output in outputs:
                tally.observe(request_id, output, delta)
                yield output
        finally:
            try:
                await outputs.aclose()  # type: ignore[attr-defined]  # aborts it if unfinished
            finally:
                self.tallies.pop(request_id, None)
                tally.open.pop(request_id, None)

    def wrap_abort(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def abort(request_id: Any, internal: bool = False) -> Any:
            if self.tallies and self.reads_aborts:
                ids = [request_id] if isinstance(request_id, str) else list(request_id)
                try:
                    for external, prompt, index, generated in _snapshot(
                        self.engine.output_processor, ids, internal
                    ):
                        tally = self.tallies.get(external)
                        if tally is not None:
                            tally.at_least(external, prompt, index, generated)
                except Exception:  # never let accounting break vLLM's abort
                    log.exception("reading an aborted request's counts failed")
            return await original(request_id, internal)

        return abort


async def close_open(tally: Tally) -> None:
    """Closes the call's vLLM requests still open, so that vLLM aborts them — and they are
    counted — before the call ends. vLLM's completion stream (and its generic chat stream) does
    not close the engine's output generator when it is closed itself: without this, the request
    would be aborted only when that generator is garbage collected, after the call's counts were
    read. A generator another task is iterating right now is left to that task."""
    for counted in list(tally.open.values()):
        if not counted.ag_running:
            try:
                await counted.aclose()
            except Exception:
                log.exception("closing a vLLM request of an ended call failed")


def instrument(engine: Any) -> None:
    """Counts what `engine` (a vLLM `AsyncLLM`) processes for the calls that have a tally:
    wraps its `generate`, `encode` and `abort` (once)."""
    if getattr(engine, "_bud_call_usage", None) is not None:
        return
    hooks = _Instrumented(engine)
    engine._bud_call_usage = hooks
    for name, params_name in (("generate", "sampling_params"), ("encode", "pooling_params")):
        original = getattr(engine, name, None)
        if original is not None:
            setattr(engine, name, hooks.wrap_stream(original, params_name))
    if getattr(engine, "abort", None) is not None:
        engine.abort = hooks.wrap_abort(engine.abort)
