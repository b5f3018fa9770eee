"""`grpc.aio` server bootstrap shared by every service: mutual TLS (`budrt.tls`), the interceptor
chain (rich errors, request ids, logging: `budrt.interceptors`, and the authorisation hook a
component fills), reflection, the standard health service and graceful shutdown; and the one
helper that opens a channel to another service (:func:`service_channel`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from budrt import tracing
from budrt.interceptors import DEFAULT_INTERCEPTORS, CallInterceptor, InterceptorChain, with_metrics
from budrt.tls import TlsMaterial, check_plaintext_listen, process_tls

log = logging.getLogger(__name__)

# Messages up to 64 MiB (embedding batches, long prompts); keepalive so idle watch streams survive
# proxies and dead peers are noticed.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Servers must accept those pings: the default (5 min) answers an idle watch stream's pings
    # with GOAWAY "too_many_pings" after a minute.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer, the generated function that registers it, and its descriptor."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor

    @classmethod
    def unimplemented(cls, grpc_module: ModuleType, descriptor: ServiceDescriptor) -> ServiceBinding:
        """The generated base servicer of `descriptor` (from its `*_pb2_grpc` module), so every
        RPC answers UNIMPLEMENTED: a service whose contract is published before its code."""
        name = descriptor.name
        servicer = getattr(grpc_module, f"{name}Servicer")()
        return cls(servicer, getattr(grpc_module, f"add_{name}Servicer_to_server"), descriptor)


# `GrpcServer(tls=...)` default: the process's TLS material from the settings (`budrt.tls`).
PROCESS_TLS: Any = object()


class GrpcServer:
    """A `grpc.aio` server hosting some services, with reflection and health.

    Every call to a hosted service passes `interceptors` (outermost first): a raised ServiceError
    becomes a gRPC status with details, any other exception a logged INTERNAL status, and RPCs a
    servicer leaves to its generated base class still answer UNIMPLEMENTED.

    `tls`: the process's material by default (mutual TLS: a client without a certificate from
    the CA fails the handshake), None for plaintext, which is refused on an address other
    machines can reach unless `insecure` is set. `authorization`: the interceptor that decides,
    per RPC, which service identities may call (`auth.service_identity`; the component fills this
    slot, the runtime knows no policy); innermost, after TLS has established who calls, and only
    with TLS (a plaintext peer has no identity). `edge`: a public face authenticated by its own
    credentials (the gateway's OpenAI service, with API keys), served in plaintext like the
    HTTP face, with TLS left to the ingress in front of it."""

    def __init__(
        self,
        address: str,
        bindings: Iterable[ServiceBinding],
        interceptors: Sequence[CallInterceptor] = DEFAULT_INTERCEPTORS,
        *,
        tls: TlsMaterial | None = PROCESS_TLS,
        authorization: CallInterceptor | None = None,
        edge: bool = False,
        max_receive_bytes: int | None = None,
    ) -> None:
        """`max_receive_bytes`: the largest request message accepted (RESOURCE_EXHAUSTED beyond,
        before it is parsed); default CHANNEL_OPTIONS' 64 MiB."""
        self.address = address
        self.bindings = list(bindings)
        if edge:
            tls = None
        elif tls is PROCESS_TLS:
            tls = process_tls()
        if tls is None and not edge:
            check_plaintext_listen(address)
        self.tls = tls
        self.edge = edge
        interceptors = with_metrics(interceptors)  # calls over the wire are counted
        if tls is not None and authorization is not None:
            interceptors = (*interceptors, authorization)
        chain = InterceptorChain(interceptors, services=[b.descriptor.full_name for b in self.bindings])
        options = CHANNEL_OPTIONS
        if max_receive_bytes is not None:
            receive = "grpc.max_receive_message_length"
            options = [(k, v) for k, v in options if k != receive] + [(receive, max_receive_bytes)]
        self.server = grpc.aio.server(options=options, interceptors=[chain])
        self.health = health.aio.HealthServicer()
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [b.descriptor.full_name for b in self.bindings]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        if tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, tls.server_credentials())
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")

    async def start(self) -> None:
        """Starts serving and marks every hosted service SERVING."""
        await self.server.start()
        for binding in self.bindings:
            await self.health.set(binding.descriptor.full_name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gRPC listening",
            extra={
                "address": self.address,
                "tls": "mutual" if self.tls is not None else "off (public edge)" if self.edge else "off",
                "services": [b.descriptor.full_name for b in self.bindings],
            },
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Marks everything NOT_SERVING, then stops, letting calls in flight finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Sets `stop` on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def service_channel(
    address: str,
    *,
    tls: TlsMaterial | None = PROCESS_TLS,
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A client channel to another service with the platform's message-size and keepalive
    options: mutual TLS with the process's certificate (`tls`: another's, or None for
    plaintext) when TLS is on, plaintext when it is off; with tracing on, its calls carry the
    caller's W3C `traceparent` (`budrt.tracing.traced_channel`)."""
    if tls is PROCESS_TLS:
        tls = process_tls()
    if tls is None:
        channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
    else:
        channel = grpc.aio.secure_channel(
            address,
            tls.channel_credentials(),
            options=[*CHANNEL_OPTIONS, *tls.channel_options()],
            interceptors=interceptors,
        )
    # Tracing on: every call carries the current span's traceparent (off: the channel as is).
    return tracing.traced_channel(channel)
