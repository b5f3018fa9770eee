"""An engine that answers instantly: an implementation of the engine contract for benchmarks and
gateway tests, where vLLM's speed would hide the gateway's own costs. It is named for what it is
and never used by `budrt`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from grpc_health.v1 import health_pb2

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from bud.openai.v1 import chat_pb2, common_pb2
from budrt.errors import Reason, not_found
from budrt.grpc_server import GrpcServer, ServiceBinding

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]


class InstantEngine(engine_service_pb2_grpc.EngineServiceServicer):
    """Serves `models`; replies "ok" (or `chunks` words when streaming, `chunk_delay` seconds
    apart) with exact usage. `open_streams` counts streams begun and not yet ended (finished,
    cancelled or closed)."""

    def __init__(self, models: list[str], chunks: int = 4, chunk_delay: float = 0.0) -> None:
        self.models = set(models)
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.calls = 0
        self.open_streams = 0

    def _check(self, model: str) -> None:
        self.calls += 1
        if model not in self.models:
            raise not_found(f"The model `{model}` does not exist.", reason=Reason.MODEL_NOT_FOUND, param="model")

    async def CreateChatCompletion(self, request: chat_pb2.ChatCompletionRequest, context: Any) -> chat_pb2.ChatCompletion:
        self._check(request.model)
        return chat_pb2.ChatCompletion(
            id="chatcmpl-instant", object="chat.completion", created=int(time.time()), model=request.model,
            choices=[chat_pb2.ChatCompletionChoice(index=0, finish_reason="stop", message=chat_pb2.ChatCompletionMessage(
                role="assistant", content="ok"))],
            usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6))

    async def StreamChatCompletion(self, request: chat_pb2.ChatCompletionRequest, context: Any) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        self._check(request.model)
        created = int(time.time())

        def chunk(**kwargs: Any) -> chat_pb2.ChatCompletionChunk:
            return chat_pb2.ChatCompletionChunk(id="chatcmpl-instant", object="chat.completion.chunk", created=created,
                                                model=request.model, **kwargs)

        self.open_streams += 1
        try:
            yield chunk(choices=[chat_pb2.ChatCompletionChunkChoice(index=0, delta=chat_pb2.ChatCompletionDelta(
                role="assistant", content=""))])
            for i in range(self.chunks):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                last = i == self.chunks - 1
                choice = chat_pb2.ChatCompletionChunkChoice(index=0, delta=chat_pb2.ChatCompletionDelta(content=f"w{i} "))
                if last:
                    choice.finish_reason = "length"
                yield chunk(choices=[choice])
            if request.stream_options.include_usage:
                yield chunk(usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=self.chunks,
                                                   total_tokens=5 + self.chunks))
        finally:
            self.open_streams -= 1


async def start_instant_engine(address: str, models: list[str], chunks: int = 4,
                               chunk_delay: float = 0.0) -> tuple[GrpcServer, InstantEngine]:
    """Starts an instant engine on `address`, its models reported SERVING by grpc.health.v1."""
    engine = InstantEngine(models, chunks, chunk_delay)
    server = GrpcServer(address, [ServiceBinding(engine, engine_service_pb2_grpc.add_EngineServiceServicer_to_server,
                                                 ENGINE_SERVICE)])
    await server.start()
    for model in models:
        await server.health.set(model, health_pb2.HealthCheckResponse.SERVING)
    return server, engine
