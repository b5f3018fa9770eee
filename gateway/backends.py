"""How the transcoder reaches a service: in-process (no loopback gRPC hop) or over a channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Protocol

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


class LocalStub:
    """A servicer in this process behind the call shapes of a generated `grpc.aio` stub, so code
    written against a remote service's stub (the gateway's engine calls) uses a co-hosted one
    unchanged and without a loopback gRPC hop: unary methods return an awaitable, streaming
    ones an async iterable with `cancel()`; a status the servicer aborts with is raised as
    `grpc.aio.AioRpcError`, details included, exactly as it would arrive over the wire.

    Methods are looked up on the servicer at call time: the gRPC server that also hosts it
    wraps them (errors → statuses) when it starts, and in-process calls get the same wrapping."""

    def __init__(self, servicer: Any, service: Any) -> None:
        for method in service.methods:
            maker = _LocalStream if method.server_streaming else _local_unary
            setattr(self, method.name, maker(servicer, method.name))


def _rpc_error(err: ServiceError) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(err.code, grpc.aio.Metadata(), grpc.aio.Metadata(*err.trailing_metadata()),
                                details=err.message)


def _local_unary(servicer: Any, name: str) -> Any:
    async def call(request: Message, metadata: Metadata = (), **_: Any) -> Message:
        try:
            return await getattr(servicer, name)(request, LocalContext(metadata))
        except ServiceError as err:
            raise _rpc_error(err) from None

    return call


class _LocalStream:
    """Makes in-process server-streaming calls of one method."""

    def __init__(self, servicer: Any, name: str) -> None:
        self.servicer = servicer
        self.name = name

    def __call__(self, request: Message, metadata: Metadata = (), **_: Any) -> _LocalStreamCall:
        context = LocalContext(metadata)
        return _LocalStreamCall(getattr(self.servicer, self.name)(request, context), context)


class _LocalStreamCall:
    """One in-process server-streaming call."""

    __slots__ = ("_generator", "_context", "_closing")
    _closing_tasks: ClassVar[set[asyncio.Task[None]]] = set()  # strong references until each close has run

    def __init__(self, generator: Any, context: LocalContext) -> None:
        self._generator = generator
        self._context = context
        self._closing = False

    def __aiter__(self) -> _LocalStreamCall:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._generator.__anext__()
        except ServiceError as err:
            raise _rpc_error(err) from None

    def cancel(self) -> bool:
        """Closes the servicer's generator (its `finally` blocks abort the work) unless it has
        finished; like `grpc.aio.Call.cancel`, True when this call did cancel."""
        if self._closing or self._generator.ag_frame is None:
            return False
        self._closing = True
        self._context._cancelled = True
        task = asyncio.get_running_loop().create_task(self._generator.aclose())
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)
        return True
