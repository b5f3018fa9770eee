"""Per-RPC authorisation by service identity over mutual TLS: every internal RPC refuses a caller
without a client certificate, one with a certificate from another CA and one with a valid
certificate of a service the RPC is not for; the services it is for get through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory

from auth.service_identity import (
    ACT_FOR_PROJECT,
    ACTING_PROJECT_HEADER,
    APP,
    ENGINE,
    GATEWAY,
    POLICY,
    PROMPT,
    ServiceIdentityPolicy,
    acting_project,
    allowed_callers,
)
from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt import tls
from budrt.errors import Reason, ServiceError
from budrt.grpc_server import GrpcServer, service_channel
from budrt.inprocess import InProcessService, LocalContext
from budrt.interceptors import DEFAULT_INTERCEPTORS
from budrt.tls import OPERATOR, LocalCa, TlsMaterial
from tests.support.tls import answering_binding, internal_methods, internal_services

IDENTITIES = (APP, ENGINE, GATEWAY, OPERATOR, "stranger")
ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]


def test_every_internal_rpc_has_callers_and_the_issue_policy_holds() -> None:
    """No internal RPC is left to the fail-closed default by accident, and the table says what
    the issue asks: engine RPCs for gateways and the app, the routing watch, usage recording and
    prompt execution for gateways, management for gateways and operators."""
    for method in internal_methods():
        assert allowed_callers(_path(method).lstrip("/")), _path(method)
    for method in ENGINE_SERVICE.methods:
        expected = {GATEWAY} if method.name == "GetRequestUsage" else {GATEWAY, APP}
        assert allowed_callers(f"bud.engine.v1.EngineService/{method.name}") == expected
    assert allowed_callers("bud.auth.v1.RoutingService/WatchRouting") == {GATEWAY}
    assert allowed_callers("bud.app.v1.UsageService/RecordUsage") == {GATEWAY}
    assert allowed_callers("bud.prompt.v1.PromptExecutionService/ExecutePrompt") == {GATEWAY}
    assert allowed_callers("bud.app.v1.UsageService/QueryUsage") == {GATEWAY, OPERATOR}
    assert allowed_callers("bud.app.v1.DeploymentService/CreateDeployment") == {GATEWAY, OPERATOR}
    # The registry, in the app's process, asks the app with its caller's token (registry/callers.py).
    for method in (
        "auth.v1.UserService/GetUser",
        "app.v1.ProjectService/ListProjects",
        "app.v1.DeploymentService/ListDeployments",
    ):
        assert allowed_callers(f"bud.{method}") == {GATEWAY, OPERATOR, APP}
    assert allowed_callers("bud.auth.v1.UserService/CreateUser") == {GATEWAY, OPERATOR}
    assert allowed_callers("bud.new.v1.Unknown/Anything") == frozenset()  # fail closed
    assert "bud.openai.v1.OpenAiService" not in POLICY  # the edge: API keys, no service identity
    # The studio's runs: the app (which checked the user) asks the executor, which alone may make
    # a model call for a project without its key.
    assert allowed_callers("bud.prompt.v1.PromptExecutionService/RunPromptBody") == {APP}
    assert allowed_callers("bud.prompt.v1.PromptExecutionService/GenerateValidationDocument") == {APP}
    assert POLICY[ACT_FOR_PROJECT] == {PROMPT}


class _Plaintext:
    """A call on the gateway's public gRPC face: metadata, no peer identity."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def test_only_the_prompt_executor_may_name_a_project_instead_of_a_key() -> None:
    from prompt.component import PromptContext

    named = ((ACTING_PROJECT_HEADER, "prj_1"),)
    assert acting_project(PromptContext(named)) == "prj_1"
    assert acting_project(PromptContext(())) is None
    assert acting_project(LocalContext(())) is None
    for context in (
        LocalContext(named),  # the gateway's own HTTP face, in process: a gateway identity
        _Plaintext(named),  # a client on the public gRPC face
        PromptContext(((ACTING_PROJECT_HEADER, "prj_1"), (ACTING_PROJECT_HEADER, "prj_2"))),
        PromptContext(((ACTING_PROJECT_HEADER, ""),)),
    ):
        with pytest.raises(ServiceError) as refused:
            acting_project(context)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
async def server(process_tls: LocalCa) -> AsyncIterator[GrpcServer]:
    """Every internal service on one mutual-TLS server, every RPC answering, the policy on."""
    running = GrpcServer(
        "127.0.0.1:0",
        [answering_binding(module, service) for module, service in internal_services()],
        authorization=ServiceIdentityPolicy(),
    )
    await running.start()
    yield running
    await running.stop(0)


async def _call(channel: grpc.aio.Channel, method_path: str, streaming: bool) -> grpc.StatusCode:
    try:
        if streaming:
            async for _ in channel.unary_stream(method_path)(b"", timeout=10):
                pass
        else:
            await channel.unary_unary(method_path)(b"", timeout=10)
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.PERMISSION_DENIED:
            assert "may not call" in (err.details() or "")
        return err.code()
    return grpc.StatusCode.OK


def _path(method: object) -> str:
    service = method.containing_service.full_name  # type: ignore[attr-defined]
    return f"/{service}/{method.name}"  # type: ignore[attr-defined]


async def test_each_identity_reaches_exactly_the_rpcs_the_policy_gives_it(
    server: GrpcServer, process_tls: LocalCa
) -> None:
    address = f"127.0.0.1:{server.port}"
    for identity in IDENTITIES:
        material = process_tls.material(identity)
        async with service_channel(address, tls=material) as channel:
            for method in internal_methods():
                code = await _call(channel, _path(method), method.server_streaming)
                allowed = identity in allowed_callers(_path(method).lstrip("/"))
                expected = grpc.StatusCode.OK if allowed else grpc.StatusCode.PERMISSION_DENIED
                assert code == expected, (identity, _path(method), code)


async def test_no_client_certificate_and_another_ca_fail_the_handshake_on_every_rpc(
    server: GrpcServer, process_tls: LocalCa, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{server.port}"
    ca_pem = process_tls.ca_cert.read_bytes()
    # Trusts the server, presents no certificate.
    anonymous = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca_pem))
    # A gateway certificate, but from a CA of its own (the attacker's); it trusts the real CA.
    forged = LocalCa(tmp_path / "other-ca").material(GATEWAY)
    forged = TlsMaterial(ca_pem, forged.cert_pem, forged.key_pem, GATEWAY)
    plaintext = service_channel(address, tls=None)
    for channel in (anonymous, service_channel(address, tls=forged), plaintext):
        async with channel:
            for method in internal_methods():
                code = await _call(channel, _path(method), method.server_streaming)
                assert code == grpc.StatusCode.UNAVAILABLE, (_path(method), code)


async def test_in_process_calls_are_the_host_process_identity(process_tls: LocalCa) -> None:
    """The gateway calling a co-hosted engine in process passes the engine's policy as the
    gateway; a process that is not allowed (an operator's) is refused the same way."""
    servicer = answering_binding(engine_service_pb2_grpc, ENGINE_SERVICE).servicer
    service = InProcessService(servicer, ENGINE_SERVICE, (*DEFAULT_INTERCEPTORS, ServiceIdentityPolicy()))
    request = message_factory.GetMessageClass(ENGINE_SERVICE.methods_by_name["ListModels"].input_type)()
    await service.methods["ListModels"](request, LocalContext(()))  # the test process is a gateway
    tls.configure(process_tls.material(OPERATOR))
    try:
        with pytest.raises(ServiceError) as refused:
            await service.methods["LoadModel"](request, LocalContext(()))
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.reason == Reason.SERVICE_NOT_ALLOWED
    finally:
        tls.configure(process_tls.material(GATEWAY))


async def test_the_app_refuses_its_internal_rpcs_to_an_operator(tmp_path: Path, process_tls: LocalCa) -> None:
    """The real app server carries the policy: an operator's certificate can log in (management)
    but not watch the routing tables or record usage; a gateway's can."""
    from app.server import start_app
    from app.settings import AppSettings
    from bud.app.v1 import usage_pb2, usage_pb2_grpc
    from bud.auth.v1 import routing_pb2, routing_pb2_grpc, user_pb2, user_pb2_grpc

    app = await start_app(
        AppSettings(
            data_dir=tmp_path,
            app_address="127.0.0.1:0",
            key_hash_secret="k" * 32,
            jwt_secret="j" * 32,
            admin_password="an-admin-password",
            default_model_name="",
            default_embedding_model_name="",
            default_image_model_name="",
        )
    )
    try:
        async with service_channel(app.address, tls=process_tls.material(OPERATOR)) as channel:
            await user_pb2_grpc.UserServiceStub(channel).Login(
                user_pb2.LoginRequest(username="admin", password="an-admin-password"), timeout=30
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                watch = routing_pb2_grpc.RoutingServiceStub(channel).WatchRouting(
                    routing_pb2.WatchRoutingRequest(), timeout=10
                )
                await watch.read()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await usage_pb2_grpc.UsageServiceStub(channel).RecordUsage(
                    usage_pb2.RecordUsageRequest(), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with service_channel(app.address, tls=process_tls.material(GATEWAY)) as channel:
            await usage_pb2_grpc.UsageServiceStub(channel).RecordUsage(
                usage_pb2.RecordUsageRequest(), timeout=10
            )
            watch = routing_pb2_grpc.RoutingServiceStub(channel).WatchRouting(
                routing_pb2.WatchRoutingRequest(), timeout=10
            )
            first = await watch.read()
            assert first.reset
            watch.cancel()
    finally:
        await app.stop(grace=0)
