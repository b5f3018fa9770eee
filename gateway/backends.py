"""How the transcoder reaches a service: in-process (no loopback gRPC hop) or over a channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from budrt.errors import ServiceError

Metadata = Sequence[tuple[str, str]]


class LocalContext:
    """The part of `grpc.aio.ServicerContext` our servicers use, for in-process calls.

    `abort` raises ServiceError (the gRPC server wrapper does the same for real contexts);
    metadata a servicer sends (rate-limit headers, ...) is kept for the HTTP response."""

    __slots__ = ("_metadata", "response_metadata", "_cancelled")

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata
        self.response_metadata: list[tuple[str, str]] = []
        self._cancelled = False

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        self.response_metadata.extend(metadata)

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        self.response_metadata.extend(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        raise ServiceError.from_status(code, details, trailing_metadata)

    def peer(self) -> str:
        return "local"

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._cancelled


class Backend(Protocol):
    """Calls the RPCs of one service."""

    async def unary(self, method: MethodDescriptor, request: Message, metadata: Metadata,
                    response_metadata: list[tuple[str, str]]) -> Message: ...

    def stream(self, method: MethodDescriptor, request: Message, metadata: Metadata,
               response_metadata: list[tuple[str, str]]) -> AsyncIterator[Message]: ...


class LocalBackend:
    """A servicer living in this process, called directly."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer

    async def unary(self, method: MethodDescriptor, request: Message, metadata: Metadata,
                    response_metadata: list[tuple[str, str]]) -> Message:
        context = LocalContext(metadata)
        try:
            return await getattr(self.servicer, method.name)(request, context)
        finally:
            response_metadata.extend(context.response_metadata)

    async def stream(self, method: MethodDescriptor, request: Message, metadata: Metadata,
                     response_metadata: list[tuple[str, str]]) -> AsyncIterator[Message]:
        context = LocalContext(metadata)
        generator = getattr(self.servicer, method.name)(request, context)
        try:
            async for item in generator:
                response_metadata.extend(context.response_metadata)
                context.response_metadata.clear()
                yield item
        finally:
            context._cancelled = True
            await generator.aclose()
            response_metadata.extend(context.response_metadata)


class RemoteBackend:
    """A service in another process, called over a `grpc.aio` channel with generic stubs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._callables: dict[str, Any] = {}

    def _callable(self, method: MethodDescriptor) -> Any:
        call = self._callables.get(method.full_name)
        if call is None:
            path = f"/{method.containing_service.full_name}/{method.name}"
            response_class = message_factory.GetMessageClass(method.output_type)
            factory = self.channel.unary_stream if method.server_streaming else self.channel.unary_unary
            call = factory(path, request_serializer=_serialize,
                           response_deserializer=response_class.FromString)
            self._callables[method.full_name] = call
        return call

    async def unary(self, method: MethodDescriptor, request: Message, metadata: Metadata,
                    response_metadata: list[tuple[str, str]]) -> Message:
        call = self._callable(method)(request, metadata=tuple(metadata))
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None

    async def stream(self, method: MethodDescriptor, request: Message, metadata: Metadata,
                     response_metadata: list[tuple[str, str]]) -> AsyncIterator[Message]:
        call = self._callable(method)(request, metadata=tuple(metadata))
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None
        finally:
            call.cancel()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
