"""EngineService over vLLM: the contract's OpenAI messages go to vLLM's own serving objects as
their pydantic requests and come back as the same messages."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic
from google.protobuf.message import Message

from bud.engine.v1 import engine_service_pb2 as pb
from bud.engine.v1 import engine_service_pb2_grpc
from bud.openai.v1 import chat_pb2, completion_pb2, embedding_pb2, image_pb2
from budrt.errors import (
    Reason,
    ServiceError,
    echo,
    grpc_code,
    internal,
    invalid_argument,
    not_found,
    unimplemented,
)
from budrt.interceptors import accepted_request_id
from budrt.json_face import JsonFaceError, from_json, from_python, to_json
from engine import call_usage
from engine.call_usage import CallLedger, Tally
from engine.images import serve as images
from engine.manager import ModelManager
from engine.request_checks import check_completion, check_response_format
from engine.vllm_model import VllmModel, sse_payloads

log = logging.getLogger(__name__)


def _vllm_error(error: Any) -> ServiceError:
    """vLLM's ErrorResponse (or its `error` object as a dict) as a ServiceError."""
    info = error.error if hasattr(error, "error") else error
    get = info.get if isinstance(info, dict) else lambda k, d=None: getattr(info, k, d)
    status = int(get("code", 500) or 500)
    return ServiceError(grpc_code(status), str(get("message", "engine error")), param=str(get("param") or ""))


def _validation_error(err: pydantic.ValidationError) -> ServiceError:
    first = err.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("function-"))
    return invalid_argument(
        f"{param}: {first.get('msg', 'invalid value')}" if param else str(err), param=param
    )


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _to_vllm(request_type: Any, message: Message) -> Any:
    """The contract message as vLLM's pydantic request (some are unions: TypeAdapter handles both)."""
    adapter = _ADAPTERS.get(request_type)
    if adapter is None:
        adapter = _ADAPTERS[request_type] = pydantic.TypeAdapter(request_type)
    try:
        return adapter.validate_json(to_json(message))
    except pydantic.ValidationError as err:
        raise _validation_error(err) from None
    except Exception as err:
        # vLLM's own "before" validators raise VLLMValidationError (not a ValueError, so pydantic
        # does not wrap it): a client error, mapped like any other vLLM raises.
        raise _exception(err) from None


def _exception(err: Exception) -> ServiceError:
    from vllm.exceptions import VLLMClientError, VLLMNotFoundError

    if isinstance(err, ServiceError):
        return err
    if isinstance(err, VLLMNotFoundError):
        return not_found(str(err), reason=None)
    if isinstance(err, (ValueError, TypeError, VLLMClientError)):
        return invalid_argument(str(err), param=str(getattr(err, "parameter", "") or ""))
    if isinstance(err, NotImplementedError):
        return unimplemented(str(err) or "not supported by this model", reason=None)
    log.exception("engine call failed")
    return internal(f"{type(err).__name__}: {err}", reason=None)


@dataclass(frozen=True)
class _Generation:
    """Where vLLM serves one kind of generation: the model's serving object (`attribute`), its
    `method`, what the kind is called in errors, vLLM's pydantic request (``module:Name``,
    imported at the first call: vLLM's modules are heavy) and the rules vLLM does not check that
    the request must meet first (`check`, engine.request_checks)."""

    attribute: str
    method: str
    what: str
    request_path: str
    check: Callable[[Any], None]

    def request_class(self) -> Any:
        module, name = self.request_path.split(":")
        return getattr(importlib.import_module(module), name)


_CHAT = _Generation(
    "openai_serving_chat",
    "create_chat_completion",
    "chat completions",
    "vllm.entrypoints.openai.chat_completion.protocol:ChatCompletionRequest",
    check_response_format,
)
_COMPLETION = _Generation(
    "openai_serving_completion",
    "create_completion",
    "completions",
    "vllm.entrypoints.openai.completion.protocol:CompletionRequest",
    check_completion,
)


def _usage_id(context: Any) -> str:
    """The call's `x-bud-usage-id` metadata when it is a valid id (the request-id rules), else ""."""
    if context is None:
        return ""
    for key, value in context.invocation_metadata() or ():
        if key == call_usage.USAGE_ID_KEY:
            return value if accepted_request_id(value) == value else ""
    return ""


class EngineServicer(engine_service_pb2_grpc.EngineServiceServicer):
    """Inference and model management for the models of one engine process.

    Each inference call that names a usage id (`x-bud-usage-id`) has its processed tokens
    counted from vLLM (`engine.call_usage`) and kept in `ledger` for a while after it ends, for
    `GetRequestUsage`."""

    def __init__(self, manager: ModelManager, ledger: CallLedger | None = None) -> None:
        self.manager = manager
        self.ledger = ledger or CallLedger()

    @contextlib.asynccontextmanager
    async def _counted(self, context: Any) -> AsyncIterator[Tally | None]:
        """The call's tally in the ledger from now until the block ends (None: no usage id); its
        vLLM requests still open then are closed (aborted, and counted) before it ends."""
        usage_id = _usage_id(context)
        if not usage_id:
            yield None
            return
        tally = self.ledger.begin(usage_id)
        try:
            yield tally
        finally:
            try:
                await call_usage.close_open(tally)
            finally:
                self.ledger.end(usage_id, tally)

    @staticmethod
    async def _call_vllm(tally: Tally | None, call: Any) -> Any:
        """Awaits `call` (a serving object's coroutine) with `tally` current, so that the vLLM
        requests it starts are counted into it (read when they start; no output is read here)."""
        token = call_usage.current.set(tally)
        try:
            return await call
        finally:
            call_usage.current.reset(token)

    def _handler(self, model: VllmModel, attribute: str, what: str) -> Any:
        handler = model.handler(attribute)
        if handler is None:
            raise invalid_argument(
                f"The model `{model.name}` does not support {what}.",
                reason=Reason.UNSUPPORTED_OPERATION,
                param="model",
            )
        return handler

    async def _generate_unary(
        self, request: Any, generation: _Generation, response: Message, context: Any
    ) -> Message:
        async with self._counted(context) as tally:
            return await self._unary_call(request, generation, response, tally)

    async def _unary_call(
        self, request: Any, generation: _Generation, response: Message, tally: Tally | None
    ) -> Message:
        model = self.manager.ready(request.model)
        handler = self._handler(model, generation.attribute, generation.what)
        request.stream = False
        vllm_request = _to_vllm(generation.request_class(), request)
        generation.check(vllm_request)
        model.inflight += 1
        try:
            result = await self._call_vllm(tally, getattr(handler, generation.method)(vllm_request, None))
        except Exception as err:
            raise _exception(err) from None
        finally:
            model.inflight -= 1
        if hasattr(result, "error") and not hasattr(result, "choices"):
            raise _vllm_error(result)
        try:
            return from_json(result.model_dump_json(), response, lenient=True)
        except JsonFaceError as err:
            # vLLM answered what the contract cannot carry: the engine's fault, said as such (a
            # bare ValueError here reached the client as UNKNOWN).
            raise internal(f"unexpected response from vLLM: {err.message}", reason=None) from None

    async def _generate_stream(
        self, request: Any, generation: _Generation, chunk_cls: type[Message], context: Any
    ) -> AsyncIterator[Message]:
        async with self._counted(context) as tally:
            model = self.manager.ready(request.model)
            handler = self._handler(model, generation.attribute, generation.what)
            request.stream = True
            vllm_request = _to_vllm(generation.request_class(), request)
            generation.check(vllm_request)
            model.inflight += 1
            result = None
            try:
                try:
                    result = await self._call_vllm(
                        tally, getattr(handler, generation.method)(vllm_request, None)
                    )
                except Exception as err:
                    raise _exception(err) from None
                if hasattr(result, "error") and not hasattr(result, "__aiter__"):
                    raise _vllm_error(result)
                async for item in result:
                    if isinstance(item, Message):  # built directly by engine.fast_stream
                        yield item
                        continue
                    for payload in sse_payloads(item):
                        obj = orjson.loads(payload)
                        if "error" in obj and "choices" not in obj:
                            raise _vllm_error(obj["error"])
                        try:
                            yield from_python(obj, chunk_cls(), lenient=True)
                        except JsonFaceError as err:
                            raise internal(
                                f"unexpected chunk from vLLM: {err.message}", reason=None
                            ) from None
            finally:
                model.inflight -= 1
                # Closing vLLM's generator now aborts its request at once, also when this stream
                # is closed rather than cancelled (an in-process caller that went away); the
                # call's counts are final only after that abort (the ledger's end, next).
                if hasattr(result, "aclose"):
                    await result.aclose()

    # ---- inference ----------------------------------------------------------------------------
    async def CreateChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> chat_pb2.ChatCompletion:
        return await self._generate_unary(request, _CHAT, chat_pb2.ChatCompletion(), context)

    async def StreamChatCompletion(
        self, request: chat_pb2.ChatCompletionRequest, context: Any
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        stream = self._generate_stream(request, _CHAT, chat_pb2.ChatCompletionChunk, context)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            # Closed now, not when garbage collected: vLLM's request is aborted, and counted,
            # before the call ends.
            await stream.aclose()

    async def CreateCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> completion_pb2.Completion:
        return await self._generate_unary(request, _COMPLETION, completion_pb2.Completion(), context)

    async def StreamCompletion(
        self, request: completion_pb2.CompletionRequest, context: Any
    ) -> AsyncIterator[completion_pb2.Completion]:
        stream = self._generate_stream(request, _COMPLETION, completion_pb2.Completion, context)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # as in StreamChatCompletion

    async def CreateEmbedding(
        self, request: embedding_pb2.EmbeddingRequest, context: Any
    ) -> embedding_pb2.EmbeddingList:
        from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest

        async with self._counted(context) as tally:
            model = self.manager.ready(request.model)
            handler = self._handler(model, "serving_embedding", "embeddings")
            vllm_request = _to_vllm(EmbeddingRequest, request)
            model.inflight += 1
            try:
                result = await self._call_vllm(tally, handler(vllm_request, None))
            except Exception as err:
                raise _exception(err) from None
            finally:
                model.inflight -= 1
        body = getattr(result, "body", b"")
        if getattr(result, "status_code", 200) != 200:
            raise _vllm_error(orjson.loads(body).get("error", {}))
        return from_json(body, embedding_pb2.EmbeddingList(), lenient=True)

    # ---- images (engine.images) -----------------------------------------------------------------
    async def GenerateImages(
        self, request: image_pb2.ImageGenerationRequest, context: Any
    ) -> pb.GeneratedImages:
        model = images.diffusion_model(self.manager.ready(request.model), request.model)
        return await images.generate(model, request)

    async def StreamImages(
        self, request: image_pb2.ImageGenerationRequest, context: Any
    ) -> AsyncIterator[pb.ImageProgress]:
        model = images.diffusion_model(self.manager.ready(request.model), request.model)
        stream = images.stream(model, request)
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()  # the job is cancelled now when the caller left

    # ---- accounting ---------------------------------------------------------------------------
    async def GetRequestUsage(
        self, request: pb.GetRequestUsageRequest, context: Any
    ) -> pb.GetRequestUsageResponse:
        found = await self.ledger.usage(request.usage_id)
        if found is None:
            raise not_found(
                f"No usage is kept for the call {echo(request.usage_id)} (unknown or expired).",
                param="usage_id",
            )
        prompt_tokens, completion_tokens, ended = found
        return pb.GetRequestUsageResponse(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, ended=ended
        )

    # ---- model management -----------------------------------------------------------------
    async def LoadModel(self, request: pb.LoadModelRequest, context: Any) -> pb.LoadModelResponse:
        served = await self.manager.load(
            request.name, request.source, request.runner, request.args, request.owner
        )
        return pb.LoadModelResponse(model=served)

    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Any) -> pb.UnloadModelResponse:
        await self.manager.unload(request.name, request.owner)
        return pb.UnloadModelResponse()

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[slot.describe() for slot in self.manager.slots.values()])

    async def GetStats(self, request: pb.GetStatsRequest, context: Any) -> pb.GetStatsResponse:
        stats = []
        for slot in self.manager.slots.values():
            m = slot.model
            if m is None:
                stats.append(pb.ModelStats(name=slot.name))
                continue
            stats.append(
                pb.ModelStats(
                    name=slot.name,
                    running_requests=m.running,
                    waiting_requests=m.waiting,
                    kv_cache_usage=m.kv_cache_usage,
                    prompt_tokens_total=m.prompt_tokens_total,
                    generation_tokens_total=m.generation_tokens_total,
                    inflight_requests=m.inflight,
                )
            )
        return pb.GetStatsResponse(models=stats)
