"""The mesh `budrt up` starts speaks mutual TLS between its services, with the CA it generated in
its data dir: the engine's and the app's ports refuse callers without a certificate (or in
plaintext) and callers of the wrong service (the issue's attacks: inference and model listing on
the engine port, the routing watch and fake usage on the app's)."""

from __future__ import annotations

import stat

import grpc
import pytest

from bud.app.v1 import usage_pb2, usage_pb2_grpc
from bud.auth.v1 import routing_pb2, routing_pb2_grpc
from bud.engine.v1 import engine_service_pb2 as engine_pb
from bud.engine.v1 import engine_service_pb2_grpc
from budrt.grpc_server import CHANNEL_OPTIONS
from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh


def test_the_generated_ca_is_private(mesh: Mesh) -> None:
    tls_dir = mesh.data_dir / "tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    keys = sorted(tls_dir.glob("*.key"))
    assert {k.stem for k in keys} >= {"ca", "app", "gateway", "operator"}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_the_engine_port_refuses_anonymous_and_wrong_callers(mesh: Mesh) -> None:
    request = engine_pb.ListModelsRequest()
    with grpc.insecure_channel(mesh.engine_grpc, options=CHANNEL_OPTIONS) as plaintext:
        with pytest.raises(grpc.RpcError) as refused:
            engine_service_pb2_grpc.EngineServiceStub(plaintext).ListModels(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    ca = (mesh.data_dir / "tls" / "ca.pem").read_bytes()
    anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(mesh.engine_grpc, anonymous) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            engine_service_pb2_grpc.EngineServiceStub(channel).ListModels(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with mesh.channel(mesh.engine_grpc, identity="operator") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            engine_service_pb2_grpc.EngineServiceStub(channel).ListModels(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with mesh.channel(mesh.engine_grpc, identity="gateway") as channel:
        assert engine_service_pb2_grpc.EngineServiceStub(channel).ListModels(request, timeout=30).models


def test_the_app_keeps_routing_and_usage_to_gateways(mesh: Mesh) -> None:
    with mesh.channel(mesh.app_grpc, identity="operator") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            next(
                routing_pb2_grpc.RoutingServiceStub(channel).WatchRouting(
                    routing_pb2.WatchRoutingRequest(), timeout=10
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as refused:
            usage_pb2_grpc.UsageServiceStub(channel).RecordUsage(usage_pb2.RecordUsageRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(mesh.app_grpc, options=CHANNEL_OPTIONS) as plaintext:
        with pytest.raises(grpc.RpcError) as refused:
            usage_pb2_grpc.UsageServiceStub(plaintext).RecordUsage(usage_pb2.RecordUsageRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
