"""How the gateway reaches a service: in-process (no loopback gRPC hop) or over a channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from budrt.errors import ServiceError
from budrt.inprocess import InProcessService, LocalContext, Metadata


class Backend(Protocol):
    """Calls the RPCs of one service."""

    async def unary(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> Message: ...

    def stream(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> AsyncIterator[Message]: ...


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
            call = factory(
                path, request_serializer=_serialize, response_deserializer=response_class.FromString
            )
            self._callables[method.full_name] = call
        return call

    async def unary(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> Message:
        call = self._callable(method)(request, metadata=tuple(metadata))
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise ServiceError.from_rpc_error(err) from None

    async def stream(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> AsyncIterator[Message]:
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


class LocalBackend:
    """A servicer living in this process, called directly (no loopback gRPC hop, no
    serialisation) through the platform's interceptor chain (`budrt.inprocess`), so it answers
    exactly as its gRPC server would. It has two faces over the same calls:

    - the transcoder's :class:`Backend` (`unary` / `stream`; failures raise ServiceError, metadata
      the servicer sends is appended to `response_metadata`);
    - a generated `grpc.aio` stub's (an attribute per RPC: `backend.Chat(request, metadata=...)`;
      unary calls return an awaitable, streaming ones an async iterable with `cancel()`, both with
      `initial_metadata()` (what the servicer sent: rate-limit headers); a status
      arrives as `grpc.aio.AioRpcError`, details included), so code written against a remote
      service's stub (the gateway's engine calls) uses a co-hosted one unchanged.
    """

    def __init__(self, servicer: Any, descriptor: ServiceDescriptor) -> None:
        self.service = InProcessService(servicer, descriptor)
        for method in descriptor.methods:
            maker = _StubStream if method.server_streaming else _stub_unary
            setattr(self, method.name, maker(self.service.methods[method.name]))

    async def unary(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> Message:
        context = LocalContext(metadata)
        try:
            return await self.service.methods[method.name](request, context)
        finally:
            response_metadata.extend(context.response_metadata)

    async def stream(
        self,
        method: MethodDescriptor,
        request: Message,
        metadata: Metadata,
        response_metadata: list[tuple[str, str]],
    ) -> AsyncIterator[Message]:
        context = LocalContext(metadata)
        generator = self.service.methods[method.name](request, context)
        try:
            async for item in generator:
                response_metadata.extend(context.response_metadata)
                context.response_metadata.clear()
                yield item
        finally:
            context.cancelled_flag = True
            await generator.aclose()
            response_metadata.extend(context.response_metadata)


def _rpc_error(err: ServiceError) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        err.code, grpc.aio.Metadata(), grpc.aio.Metadata(*err.trailing_metadata()), details=err.message
    )


def _stub_unary(behavior: Any) -> Any:
    def call(request: Message, metadata: Metadata = (), **_: Any) -> _StubUnaryCall:
        return _StubUnaryCall(behavior, request, LocalContext(metadata))

    return call


class _StubUnaryCall:
    """One in-process unary call, shaped like `grpc.aio.UnaryUnaryCall`: awaited for the answer
    (a status arrives as `grpc.aio.AioRpcError`); `initial_metadata()`: what the servicer sent."""

    __slots__ = ("_behavior", "_context", "_request")

    def __init__(self, behavior: Any, request: Message, context: LocalContext) -> None:
        self._behavior, self._request, self._context = behavior, request, context

    def __await__(self) -> Any:
        return self._answer().__await__()

    async def _answer(self) -> Message:
        try:
            return await self._behavior(self._request, self._context)
        except ServiceError as err:
            raise _rpc_error(err) from None

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata(*self._context.response_metadata)


class _StubStream:
    """Makes in-process server-streaming calls of one method, stub-style."""

    __slots__ = ("behavior",)

    def __init__(self, behavior: Any) -> None:
        self.behavior = behavior

    def __call__(self, request: Message, metadata: Metadata = (), **_: Any) -> _StubStreamCall:
        context = LocalContext(metadata)
        return _StubStreamCall(self.behavior(request, context), context)


class _StubStreamCall:
    """One in-process server-streaming call, shaped like `grpc.aio.UnaryStreamCall`."""

    __slots__ = ("_closing", "_context", "_generator")
    _closing_tasks: ClassVar[set[asyncio.Task[None]]] = set()  # strong references until each close has run

    def __init__(self, generator: Any, context: LocalContext) -> None:
        self._generator = generator
        self._context = context
        self._closing = False

    def __aiter__(self) -> _StubStreamCall:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._generator.__anext__()
        except ServiceError as err:
            raise _rpc_error(err) from None

    async def initial_metadata(self) -> grpc.aio.Metadata:
        """What the servicer has sent as metadata so far (rate-limit headers, before its first item)."""
        return grpc.aio.Metadata(*self._context.response_metadata)

    def cancel(self) -> bool:
        """Closes the servicer's generator (its `finally` blocks abort the work) unless it has
        finished; like `grpc.aio.Call.cancel`, True when this call did cancel."""
        if self._closing or self._generator.ag_frame is None:
            return False
        self._closing = True
        self._context.cancelled_flag = True
        task = asyncio.get_running_loop().create_task(self._generator.aclose())
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)
        return True
