"""Calling a servicer in this process as if over the wire: through the same interceptor chain
its gRPC server applies (request ids, error mapping, logging), with a context standing in for
`grpc.aio.ServicerContext`. Co-hosted callers (a gateway and its engine, the gateway's HTTP face
and its OpenAI service) use it to skip the loopback gRPC hop without behaving differently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from budrt.errors import ServiceError
from budrt.interceptors import DEFAULT_INTERCEPTORS, CallInterceptor, InterceptorChain, is_generated_default
from budrt.tls import identity_uri, process_identity

Metadata = Sequence[tuple[str, Any]]

# What grpc answers for an RPC the servicer leaves to its generated base class.
_UNIMPLEMENTED = (grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


class LocalContext:
    """The part of `grpc.aio.ServicerContext` our servicers use, for in-process calls.

    `abort` raises ServiceError (the status the caller gets); metadata a servicer sends
    (rate-limit headers, ...) is kept in `response_metadata` for the caller."""

    __slots__ = ("_metadata", "cancelled_flag", "response_metadata")

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata
        self.response_metadata: list[tuple[str, Any]] = []
        self.cancelled_flag = False

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

    def auth_context(self) -> dict[str, list[bytes]]:
        """The caller is this process: its own service identity, as a TLS peer's would read
        (`budrt.tls.peer_identity`)."""
        return {
            "transport_security_type": [b"inprocess"],
            "peer_spiffe_id": [identity_uri(process_identity()).encode()],
        }

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return self.cancelled_flag

    def done(self) -> bool:
        return self.cancelled_flag


class InProcessService:
    """A servicer's methods, each wrapped once by the interceptor chain, by RPC name: call
    `methods[name](request, LocalContext(metadata))`; a failure raises ServiceError, exactly the
    status a gRPC client of the same servicer would get."""

    __slots__ = ("descriptor", "methods")

    def __init__(
        self,
        servicer: Any,
        descriptor: ServiceDescriptor,
        interceptors: Sequence[CallInterceptor] = DEFAULT_INTERCEPTORS,
    ) -> None:
        chain = InterceptorChain(interceptors)
        self.descriptor = descriptor
        self.methods: dict[str, Any] = {}
        for method in descriptor.methods:
            behavior = getattr(servicer, method.name)
            if is_generated_default(behavior):
                behavior = _unimplemented_stream if method.server_streaming else _unimplemented_unary
            self.methods[method.name] = chain.wrap(
                behavior, f"{descriptor.full_name}/{method.name}", method.server_streaming
            )


async def _unimplemented_unary(request: Any, context: Any) -> Any:
    raise ServiceError(*_UNIMPLEMENTED)


async def _unimplemented_stream(request: Any, context: Any) -> Any:
    raise ServiceError(*_UNIMPLEMENTED)
    yield  # an async generator, as a streaming behaviour is
