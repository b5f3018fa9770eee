"""The prompt executor as a component of the mesh (`budrt serve prompt`): `budrt up` runs it inside
the gateway's process unless `prompt_in_gateway` is false (like the engine), where each side calls
the other in process — the gateway its PromptExecutionService, the executor the gateway's OpenAI
service for the model call — with no loopback gRPC hop. Either way it serves
PromptExecutionService at `prompt_address` over mutual TLS (by service identity: gateways, and the
app for the studio's runs, `auth/service_identity.py`). Run alone, it calls the gateway's public
gRPC face with the caller's key; the studio's runs, which name a project instead of a key, need the
gateway in process (its public face carries no service identity to trust: see prompt/README.md).

Prompt bodies come from the app's `PromptService.WatchPrompts` stream (`store.py`); prompt
authoring (PromptService) is data the app owns: `app/services/prompts.py`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from auth.service_identity import PROMPT, ServiceIdentityPolicy
from bud.openai.v1 import openai_service_pb2, openai_service_pb2_grpc
from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.components import Component, Host
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from budrt.inprocess import InProcessService, LocalContext
from budrt.tls import identity_uri
from prompt.execution import PromptExecutor
from prompt.render import Limits
from prompt.settings import PromptSettings
from prompt.store import PromptStore, PromptWatcher
from prompt.tools.base import ConnectorConfig

PROMPT_EXECUTION_SERVICE = prompt_pb2.DESCRIPTOR.services_by_name["PromptExecutionService"]
OPENAI_SERVICE = openai_service_pb2.DESCRIPTOR.services_by_name["OpenAiService"]


class PromptContext(LocalContext):
    """An in-process call made by the prompt executor: its service identity is the executor's
    (`prompt`), not the host process's, so that the gateway tells it from its own HTTP face
    (whose in-process calls are the gateway's) where that matters (`acting_project`)."""

    __slots__ = ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {
            "transport_security_type": [b"inprocess"],
            "peer_spiffe_id": [identity_uri(PROMPT).encode()],
        }


class _LocalUnaryCall:
    """One in-process unary call, shaped like `grpc.aio.UnaryUnaryCall`: awaited for the answer;
    `initial_metadata()` is what the servicer sent (its rate-limit headers)."""

    __slots__ = ("_behavior", "_context", "_request")

    def __init__(self, behavior: Any, request: Any, context: LocalContext) -> None:
        self._behavior, self._request, self._context = behavior, request, context

    def __await__(self) -> Any:
        return self._behavior(self._request, self._context).__await__()

    async def initial_metadata(self) -> tuple[tuple[str, Any], ...]:
        return tuple(self._context.response_metadata)


class _LocalStreamCall:
    """One in-process streaming call: an async iterator of the events, `initial_metadata()` (once
    the first event is out) and `aclose()` (ends the call and its generation)."""

    __slots__ = ("_context", "_generator")

    def __init__(self, generator: Any, context: LocalContext) -> None:
        self._generator, self._context = generator, context

    def __aiter__(self) -> _LocalStreamCall:
        return self

    async def __anext__(self) -> Any:
        return await self._generator.__anext__()

    async def initial_metadata(self) -> tuple[tuple[str, Any], ...]:
        return tuple(self._context.response_metadata)

    async def aclose(self) -> None:
        self._context.cancelled_flag = True
        await self._generator.aclose()


class InProcessOpenAi:
    """The gateway's OpenAI servicer co-hosted here, called like a stub (`CreateResponse(request,
    metadata=...)`) through the platform's interceptor chain, as the executor
    (`PromptContext`); a failure raises ServiceError."""

    # The studio's runs need it (prompt/studio.py): a call naming a project, without a key.
    in_process = True

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer
        self.service = InProcessService(servicer, OPENAI_SERVICE)

    def CreateResponse(self, request: Any, metadata: Any = (), **_: Any) -> _LocalUnaryCall:
        return _LocalUnaryCall(self.service.methods["CreateResponse"], request, PromptContext(metadata))

    def StreamResponse(self, request: Any, metadata: Any = (), **_: Any) -> _LocalStreamCall:
        """The events (`aclose()` ends the call and its generation)."""
        context = PromptContext(metadata)
        return _LocalStreamCall(self.service.methods["StreamResponse"](request, context), context)


def build_executor(
    settings: PromptSettings, openai: Callable[[], Any], store: PromptStore | None = None
) -> PromptExecutor:
    """The executor with its settings' limits."""
    return PromptExecutor(
        store or PromptStore(),
        openai,
        Limits(time_s=settings.render_timeout_s, max_chars=settings.render_max_chars),
        settings.max_output_attempts,
        ConnectorConfig(
            slack_base_url=settings.slack_base_url,
            notion_base_url=settings.notion_base_url,
            timeout_s=settings.tool_timeout_s,
            max_output_chars=settings.tool_output_max_chars,
        ),
        settings.max_tool_steps,
        run_secret=settings.secret("key_hash_secret"),
    )


def _openai_lookup(host: Host, settings: PromptSettings) -> Callable[[], Any]:
    """The gateway's OpenAI service: in process when a gateway is co-hosted (it offers its
    servicer once it runs), else its public gRPC face (plaintext: TLS is the ingress's there)."""
    held: list[Any] = []

    def lookup() -> Any:
        if not held:
            offered = host.offered(OPENAI_SERVICE)
            if offered:
                held.append(InProcessOpenAi(next(iter(offered.values()))))
            elif host.names[0] == "prompt":
                channel = service_channel(settings.gateway_grpc_address, tls=None)
                held.append(openai_service_pb2_grpc.OpenAiServiceStub(channel))
            else:
                return None  # the co-hosted gateway is not running yet
        return held[0]

    return lookup


async def _serve(settings: PromptSettings, stop: asyncio.Event, executor: PromptExecutor) -> None:
    watcher = PromptWatcher(settings.app_address, executor.store, f"prompt@{socket.gethostname()}")
    task = asyncio.create_task(watcher.run())
    # Served co-hosted too: the app reaches the executor here for the studio's runs.
    binding = ServiceBinding(
        executor, prompt_pb2_grpc.add_PromptExecutionServiceServicer_to_server, PROMPT_EXECUTION_SERVICE
    )
    server = GrpcServer(settings.prompt_address, [binding], authorization=ServiceIdentityPolicy())
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop(5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _start(host: Host) -> Callable[[], Awaitable[None]]:
    settings = host.settings(PromptSettings)
    executor = build_executor(settings, _openai_lookup(host, settings))
    host.offer(PROMPT_EXECUTION_SERVICE, settings.prompt_address, executor)
    return lambda: _serve(settings, host.stop, executor)


def _joins(settings: PromptSettings) -> str:
    return "gateway" if settings.prompt_in_gateway else ""


component = Component(
    name="prompt",
    settings=PromptSettings,
    address_setting="prompt_address",
    start=_start,
    joins=_joins,
)
