"""An engine that answers instantly: the one test implementation of the engine contract
(EngineService plus grpc.health.v1 per model), for the app's reconciler tests, the gateway tests
and the gateway benchmark, where vLLM's speed would hide the caller's own costs. It is named for
what it is and never used by `budrt`.

It keeps no opinion on where a model comes from: LoadModel copies whatever the request says into
the ServedModel it reports, and scripted failures (`failures`) match the request's text, so the
fake needs no change when the shape of a model source does.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from bud.openai.v1 import chat_pb2, common_pb2, completion_pb2, embedding_pb2
from budrt.errors import Reason, failed_precondition, internal, invalid_argument, not_found, unavailable
from budrt.grpc_server import GrpcServer, ServiceBinding

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]
pb = engine_service_pb2

PROMPT_TOKENS = 5  # the usage every request reports for its prompt
USAGE_ID_KEY = "x-bud-usage-id"  # the metadata naming a call's counts (EngineService.GetRequestUsage)
KEPT_CALLS = 10_000  # the calls whose counts are kept


def _usage(completion_tokens: int) -> common_pb2.Usage:
    """The usage of an instant answer: a fixed prompt, `completion_tokens` generated."""
    return common_pb2.Usage(
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=completion_tokens,
        total_tokens=PROMPT_TOKENS + completion_tokens,
    )


EMBEDDING_DIMENSIONS = 4


def _copy_common_fields(source: Message, target: Message) -> None:
    """Copies the fields `source` has set into the same-named fields of `target`."""
    for field, value in source.ListFields():
        if field.name not in target.DESCRIPTOR.fields_by_name:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


class InstantEngine(engine_service_pb2_grpc.EngineServiceServicer):
    """Serves `models` (READY from the start) and whatever LoadModel adds.

    Inference: chat replies "ok"; chat and completion streams send `chunks` words, `chunk_delay`
    seconds apart; unary chat and completion calls take `unary_delay` seconds; embeddings are
    `EMBEDDING_DIMENSIONS` floats per input; usage is exact. `calls` counts inference calls,
    `open_streams` the streams begun and not yet ended (finished, cancelled or closed),
    `open_unary` the unary chat and completion calls begun and not yet ended (answered or
    cancelled).

    Processed tokens: like the real engine, each inference call that carries `x-bud-usage-id`
    metadata has its counts kept (`processed[usage_id]`: [prompt, generated]), also when it is
    cancelled or fails, and answered by GetRequestUsage (a running call is waited for briefly;
    an unknown id is NOT_FOUND). A stream counts a token as generated as soon as it makes its
    chunk (before the caller reads it); a unary call generates `unary_tokens` tokens evenly over
    `unary_delay`. `fail_after`: chat and completion calls fail (INTERNAL) after generating that
    many tokens, as a generation that breaks midway. `keeps_usage` false: GetRequestUsage answers
    NOT_FOUND for every id, as an engine that restarted. `usage_calls` counts GetRequestUsage
    calls.

    Scripting (prompt tests): `replies` are the contents of the next unary chat answers, in order
    (then "ok" again); a reply that is a list of (function name, JSON arguments) pairs is an
    answer calling those tools (finish_reason "tool_calls", call ids `call_<n>`), and such a
    reply at the head of `replies` also scripts the next chat stream (the calls, their
    arguments in two deltas each); `chat_requests` keeps every chat request when
    `keep_requests` is true. With `stream_replies` true, a text reply at the head of `replies`
    scripts the next chat stream too (its words, each a chunk, `chunk_delay` seconds apart; "ok"
    when there is none, as a unary answer).

    Model management: records LoadModel (`load_calls`) and UnloadModel (`unload_calls`) calls and
    enforces model owners as the real engine does (a LoadModel of a name served for another
    owner, an UnloadModel by another owner: FAILED_PRECONDITION, `refused_calls` counts them;
    `models` given at construction have no owner);
    counts GetStats calls (`stats_calls`; its stats are zeros per model);
    a load takes `load_delay` seconds and ends READY, or FAILED with `failures[key]` as its error
    when the request's text (name, source, arguments) contains `key`. With `health` attached
    (`serve_instant_engine` does it) each model's grpc.health.v1 status follows its state.
    """

    def __init__(self, models: Iterable[str] = (), chunks: int = 4, chunk_delay: float = 0.0) -> None:
        self.models: dict[str, pb.ServedModel] = {
            name: pb.ServedModel(name=name, state=pb.MODEL_STATE_READY) for name in models
        }
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.unary_delay = 0.0
        self.unary_tokens = 1
        self.fail_after: int | None = None
        # Models whose inference calls are refused as not ready while ListModels still reports
        # them READY: what a call meets when it reaches a model the control plane has not seen
        # leave READY (a test of that answer that does not make the reconciler react).
        self.calls_not_ready: set[str] = set()
        self.keeps_usage = True
        self.processed: dict[str, list[int]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self.usage_calls = 0
        self.calls = 0
        self.open_streams = 0
        self.open_unary = 0
        self.load_calls: list[pb.LoadModelRequest] = []
        self.unload_calls: list[str] = []
        self.stats_calls = 0
        self.refused_calls = 0
        self.failures: dict[str, str] = {}
        self.load_delay = 0.0
        self.health: health.aio.HealthServicer | None = None
        self.replies: list[str | list[tuple[str, str]]] = []
        self.tool_calls_made = 0
        self.keep_requests = False
        self.stream_replies = False
        self.chat_requests: list[chat_pb2.ChatCompletionRequest] = []
        self.image_requests: list[Any] = []  # every image request, as the engine got it

    # ---- helpers of tests ---------------------------------------------------------------------
    def _call_id(self) -> str:
        self.tool_calls_made += 1
        return f"call_{self.tool_calls_made}"

    def loaded_names(self) -> list[str]:
        """Names of the LoadModel calls so far."""
        return [c.name for c in self.load_calls]

    async def attach_health(self, servicer: health.aio.HealthServicer) -> None:
        """Reports each model's health on `servicer` from now on (READY ones SERVING at once)."""
        self.health = servicer
        for name, model in self.models.items():
            await self._set_health(name, model.state == pb.MODEL_STATE_READY)

    async def _set_health(self, name: str, serving: bool) -> None:
        if self.health is not None:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await self.health.set(name, status)

    def _check(self, model: str) -> None:
        """Counts an inference call; refuses it as the real engine does for an unknown or
        not-READY model."""
        self.calls += 1
        served = self.models.get(model)
        if served is None:
            raise not_found(
                f"The model `{model}` does not exist.", reason=Reason.MODEL_NOT_FOUND, param="model"
            )
        if served.state != pb.MODEL_STATE_READY or model in self.calls_not_ready:
            state = pb.MODEL_STATE_LOADING if model in self.calls_not_ready else served.state
            raise unavailable(
                f"The model `{model}` is not ready ({pb.ModelState.Name(state)}).",
                reason=Reason.MODEL_NOT_READY,
                param="model",
            )

    async def _pace(self) -> None:
        if self.chunk_delay:
            await asyncio.sleep(self.chunk_delay)

    def _begin(self, context: Any) -> tuple[str, list[int]]:
        """The call's usage id ("" when none) and its [prompt, generated] counts (kept under that
        id; the oldest of more than `KEPT_CALLS` are dropped, as the real engine bounds them)."""
        counts = [0, 0]
        metadata = context.invocation_metadata() if context is not None else ()
        usage_id = next((v for k, v in metadata or () if k == USAGE_ID_KEY), "")
        if usage_id:
            self.processed[usage_id] = counts
            self._ended[usage_id] = asyncio.Event()
            while len(self.processed) > KEPT_CALLS:
                oldest = next(iter(self.processed))
                del self.processed[oldest], self._ended[oldest]
        return usage_id, counts

    def _admit(self, context: Any, model: str) -> tuple[str, list[int]]:
        """Begins a call's counts and checks its model (`_check`); its prompt counts once the
        model accepted it, as vLLM counts the prompt of a request it accepted."""
        usage_id, counts = self._begin(context)
        try:
            self._check(model)
        except BaseException:
            self._end(usage_id)
            raise
        counts[0] = PROMPT_TOKENS
        return usage_id, counts

    def _end(self, usage_id: str) -> None:
        ended = self._ended.get(usage_id)
        if ended is not None:
            ended.set()

    async def _work(self, counts: list[int]) -> None:
        """A unary call's generation: `unary_tokens` tokens over `unary_delay` seconds, counted in
        `open_unary` meanwhile."""
        self.open_unary += 1
        try:
            for i in range(self.unary_tokens):
                if self.unary_delay:
                    await asyncio.sleep(self.unary_delay / self.unary_tokens)
                self._token(counts, i)
        finally:
            self.open_unary -= 1

    async def _unary(self, context: Any, model: str) -> None:
        usage_id, counts = self._admit(context, model)
        try:
            await self._work(counts)
        finally:
            self._end(usage_id)

    def _token(self, counts: list[int], i: int) -> None:
        """Generates token `i` of a call (or fails there, when scripted)."""
        if self.fail_after is not None and i >= self.fail_after:
            raise internal("the generation failed midway", reason=None)
        counts[1] += 1

    # ---- inference ----------------------------------------------------------------------------
    async def CreateChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> chat_pb2.ChatCompletion:
        if self.keep_requests:
            self.chat_requests.append(request)
        await self._unary(context, request.model)
        reply = self.replies.pop(0) if self.replies else "ok"
        if isinstance(reply, list):
            message = chat_pb2.ChatCompletionMessage(role="assistant")
            for name, arguments in reply:
                message.tool_calls.add(
                    id=self._call_id(),
                    type="function",
                    function=common_pb2.FunctionCall(name=name, arguments=arguments),
                )
            choice = chat_pb2.ChatCompletionChoice(index=0, finish_reason="tool_calls", message=message)
        else:
            choice = chat_pb2.ChatCompletionChoice(
                index=0,
                finish_reason="stop",
                message=chat_pb2.ChatCompletionMessage(role="assistant", content=reply),
            )
        return chat_pb2.ChatCompletion(
            id="chatcmpl-instant",
            object="chat.completion",
            created=int(time.time()),
            model=request.model,
            choices=[choice],
            usage=_usage(self.unary_tokens),
        )

    async def StreamChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        if self.keep_requests:
            self.chat_requests.append(request)
        usage_id, counts = self._admit(context, request.model)
        created = int(time.time())

        def chunk(**kwargs: Any) -> chat_pb2.ChatCompletionChunk:
            return chat_pb2.ChatCompletionChunk(
                id="chatcmpl-instant",
                object="chat.completion.chunk",
                created=created,
                model=request.model,
                **kwargs,
            )

        self.open_streams += 1
        calls = self.replies.pop(0) if self.replies and isinstance(self.replies[0], list) else None
        words: list[str] | None = None
        if self.stream_replies and calls is None:
            text = self.replies.pop(0) if self.replies and isinstance(self.replies[0], str) else "ok"
            assert isinstance(text, str)
            words = re.findall(r"\S+\s*", text) or [""]
        try:
            yield chunk(
                choices=[
                    chat_pb2.ChatCompletionChunkChoice(
                        index=0, delta=chat_pb2.ChatCompletionDelta(role="assistant", content="")
                    )
                ]
            )
            if calls is not None:
                for index, (name, arguments) in enumerate(calls):
                    half = len(arguments) // 2
                    for piece, first in ((arguments[:half], True), (arguments[half:], False)):
                        delta = chat_pb2.ChatCompletionDelta()
                        call = delta.tool_calls.add(index=index)
                        if first:
                            call.id, call.type, call.function.name = self._call_id(), "function", name
                        call.function.arguments = piece
                        yield chunk(choices=[chat_pb2.ChatCompletionChunkChoice(index=0, delta=delta)])
                last = chat_pb2.ChatCompletionChunkChoice(index=0, finish_reason="tool_calls")
                yield chunk(choices=[last])
                if request.stream_options.include_usage:
                    yield chunk(usage=_usage(len(calls)))
                return
            pieces = words if words is not None else [f"w{i} " for i in range(self.chunks)]
            for i, piece in enumerate(pieces):
                await self._pace()
                self._token(counts, i)
                choice = chat_pb2.ChatCompletionChunkChoice(
                    index=0, delta=chat_pb2.ChatCompletionDelta(content=piece)
                )
                if i == len(pieces) - 1:
                    choice.finish_reason = "length" if words is None else "stop"
                yield chunk(choices=[choice])
            if request.stream_options.include_usage:
                yield chunk(usage=_usage(len(pieces)))
        finally:
            self.open_streams -= 1
            self._end(usage_id)

    def _completion(
        self, request: completion_pb2.CompletionRequest, created: int, **kwargs: Any
    ) -> completion_pb2.Completion:
        return completion_pb2.Completion(
            id="cmpl-instant", object="text_completion", created=created, model=request.model, **kwargs
        )

    async def CreateCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> completion_pb2.Completion:
        await self._unary(context, request.model)
        return self._completion(
            request,
            int(time.time()),
            choices=[completion_pb2.CompletionChoice(index=0, text="ok", finish_reason="stop")],
            usage=_usage(self.unary_tokens),
        )

    async def StreamCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> AsyncIterator[completion_pb2.Completion]:
        usage_id, counts = self._admit(context, request.model)
        created = int(time.time())
        self.open_streams += 1
        try:
            for i in range(self.chunks):
                await self._pace()
                self._token(counts, i)
                choice = completion_pb2.CompletionChoice(index=0, text=f"w{i} ")
                if i == self.chunks - 1:
                    choice.finish_reason = "length"
                yield self._completion(request, created, choices=[choice])
            if request.stream_options.include_usage:
                yield self._completion(
                    request,
                    created,
                    usage=_usage(self.chunks),
                )
        finally:
            self.open_streams -= 1
            self._end(usage_id)

    async def CreateEmbedding(
        self, request: embedding_pb2.EmbeddingRequest, context: Any
    ) -> embedding_pb2.EmbeddingList:
        usage_id, counts = self._admit(context, request.model)
        which = request.WhichOneof("input")
        inputs = {
            "input_texts": len(request.input_texts.values),
            "input_token_lists": len(request.input_token_lists.values),
        }.get(which or "", 1)
        counts[0] = PROMPT_TOKENS * inputs
        self._end(usage_id)
        reply = embedding_pb2.EmbeddingList(
            object="list",
            model=request.model,
            usage=embedding_pb2.EmbeddingUsage(
                prompt_tokens=PROMPT_TOKENS * inputs, total_tokens=PROMPT_TOKENS * inputs
            ),
        )
        for index in range(inputs):
            item = reply.data.add(object="embedding", index=index)
            item.embedding_floats.values.extend([float(index)] * EMBEDDING_DIMENSIONS)
        return reply

    # ---- accounting ---------------------------------------------------------------------------
    # ---- images ------------------------------------------------------------------------------
    def _images(self, request: Any) -> pb.GeneratedImages:
        """The request's images: real encoded images (Pillow) of its size and format, a colour
        drawn from the seed (the same seed, the same bytes; a different one, others)."""
        width, height = _size(request.size if request.HasField("size") else "")
        if not (
            8 <= width <= MAX_IMAGE_SIDE and 8 <= height <= MAX_IMAGE_SIDE and width % 8 == height % 8 == 0
        ):
            # As the real engine refuses what its model cannot make.
            raise invalid_argument(
                f"Invalid 'size': sides must be multiples of 8 from 8 to {MAX_IMAGE_SIDE}.", param="size"
            )
        fmt = request.output_format if request.HasField("output_format") else "png"
        steps = request.num_inference_steps if request.HasField("num_inference_steps") else IMAGE_STEPS
        seed = request.seed if request.HasField("seed") else 0
        out = pb.GeneratedImages(revised_prompt=request.prompt, steps=steps)
        for index in range(request.n if request.HasField("n") else 1):
            data = encode_image(width, height, fmt, seed + index)
            out.images.add(
                data=data, output_format=fmt, width=width, height=height, seed=seed + index, index=index
            )
        n = len(out.images)
        out.usage.input_tokens = out.usage.total_tokens = out.usage.input_tokens_details.text_tokens = (
            PROMPT_TOKENS
        )
        out.usage.images, out.usage.steps = n, steps
        return out

    async def GenerateImages(self, request: Any, context: Any) -> pb.GeneratedImages:
        self.calls += 1
        self.image_requests.append(request)
        usage_id, counts = self._admit(context, request.model)
        self.open_unary += 1
        try:
            if self.unary_delay:
                await asyncio.sleep(self.unary_delay)
            return self._images(request)
        finally:
            self.open_unary -= 1
            self._end(usage_id)

    async def StreamImages(self, request: Any, context: Any) -> AsyncIterator[pb.ImageProgress]:
        """One progress event per step of each image (`chunk_delay` apart), a partial image at the
        last `partial_images` steps of each, then the result."""
        self.calls += 1
        self.image_requests.append(request)
        usage_id, counts = self._admit(context, request.model)
        self.open_streams += 1
        try:
            result = self._images(request)
            partials = request.partial_images if request.HasField("partial_images") else 0
            for image in result.images:
                for step in range(1, result.steps + 1):
                    await self._pace()
                    event = pb.ImageProgress(image_index=image.index, step=step, total_steps=result.steps)
                    due = step - (result.steps - partials)
                    if due > 0:
                        event.partial_image.CopyFrom(image)
                        event.partial_image_index = due - 1
                    yield event
            yield pb.ImageProgress(
                image_index=len(result.images) - 1, step=result.steps, total_steps=result.steps, result=result
            )
        finally:
            self.open_streams -= 1
            self._end(usage_id)

    async def GetRequestUsage(
        self, request: pb.GetRequestUsageRequest, context: Any
    ) -> pb.GetRequestUsageResponse:
        self.usage_calls += 1
        counts = self.processed.get(request.usage_id) if self.keeps_usage else None
        if counts is None:
            raise not_found(f"No usage is kept for the call {request.usage_id!r}.", param="usage_id")
        ended = self._ended[request.usage_id]
        if not ended.is_set():
            try:
                await asyncio.wait_for(ended.wait(), 1.0)
            except TimeoutError:
                pass
        return pb.GetRequestUsageResponse(
            prompt_tokens=counts[0], completion_tokens=counts[1], ended=ended.is_set()
        )

    # ---- model management -----------------------------------------------------------------
    def _failure(self, request: pb.LoadModelRequest) -> str | None:
        text = text_format.MessageToString(request)
        return next((error for key, error in self.failures.items() if key in text), None)

    def _check_owner(self, name: str, owner: pb.ModelOwner) -> None:
        """Refuses, as the real engine does, a request whose owner is not the model's."""
        served = self.models.get(name)
        if served is not None and served.owner != owner:
            self.refused_calls += 1
            raise failed_precondition(
                f"model {name!r} is served here for another owner",
                reason=Reason.MODEL_OWNER_MISMATCH,
                param="owner",
            )

    async def LoadModel(self, request: pb.LoadModelRequest, context: Any) -> pb.LoadModelResponse:
        self.load_calls.append(request)
        self._check_owner(request.name, request.owner)
        model = pb.ServedModel(state=pb.MODEL_STATE_LOADING)
        _copy_common_fields(request, model)  # name, source, runner, args, owner: as asked
        self.models[request.name] = model
        await self._set_health(request.name, False)
        await asyncio.sleep(self.load_delay)
        error = self._failure(request)
        if error is not None:
            model.state, model.error = pb.MODEL_STATE_FAILED, error
        else:
            model.state = pb.MODEL_STATE_READY
        await self._set_health(request.name, model.state == pb.MODEL_STATE_READY)
        return pb.LoadModelResponse(model=model)

    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Any) -> pb.UnloadModelResponse:
        self.unload_calls.append(request.name)
        self._check_owner(request.name, request.owner)
        if self.models.pop(request.name, None) is None:
            raise not_found(
                f"model {request.name!r} is not served here", reason=Reason.MODEL_NOT_FOUND, param="name"
            )
        await self._set_health(request.name, False)
        return pb.UnloadModelResponse()

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=list(self.models.values()))

    async def GetStats(self, request: pb.GetStatsRequest, context: Any) -> pb.GetStatsResponse:
        self.stats_calls += 1
        return pb.GetStatsResponse(models=[pb.ModelStats(name=name) for name in self.models])


IMAGE_STEPS = 4  # the steps of an image request that sets none
DEFAULT_IMAGE_SIZE = (64, 64)
MAX_IMAGE_SIDE = 1024


def _size(text: str) -> tuple[int, int]:
    """ "WxH" as (width, height); the default size for "", "auto" or anything else."""
    width, _, height = text.partition("x")
    if width.isdigit() and height.isdigit():
        return int(width), int(height)
    return DEFAULT_IMAGE_SIZE


def encode_image(width: int, height: int, fmt: str, seed: int) -> bytes:
    """A `width`×`height` image of one colour drawn from `seed`, encoded as `fmt`."""
    import io
    import random

    from PIL import Image

    colour = tuple(random.Random(seed).randrange(256) for _ in range(3))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(
        buffer, format={"jpeg": "JPEG", "webp": "WEBP"}.get(fmt, "PNG")
    )
    return buffer.getvalue()


def engine_binding(engine: InstantEngine) -> ServiceBinding:
    """The EngineService binding of `engine`, for a GrpcServer."""
    return ServiceBinding(engine, engine_service_pb2_grpc.add_EngineServiceServicer_to_server, ENGINE_SERVICE)


async def serve_instant_engine(
    address: str, engine: InstantEngine, extra: Sequence[ServiceBinding] = ()
) -> GrpcServer:
    """Starts `engine` (and the `extra` services) on `address`; its models' health follows their
    state from now on."""
    server = GrpcServer(address, [engine_binding(engine), *extra])
    await server.start()
    await engine.attach_health(server.health)
    return server


async def start_instant_engine(
    address: str, models: list[str], chunks: int = 4, chunk_delay: float = 0.0
) -> tuple[GrpcServer, InstantEngine]:
    """Starts an instant engine serving `models` on `address`, reported SERVING by grpc.health.v1."""
    engine = InstantEngine(models, chunks, chunk_delay)
    return await serve_instant_engine(address, engine), engine
