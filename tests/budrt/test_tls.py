"""Mutual TLS between the services (`budrt.tls`, `budrt.grpc_server`): the local CA and its files,
the process's material from the settings, the plaintext refusal on reachable addresses, and
grpcurl with the operator's certificate."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt.grpc_server import GrpcServer, service_channel
from budrt.settings import RuntimeSettings, SettingsError
from budrt.tls import (
    OPERATOR,
    InsecureListenError,
    LocalCa,
    TlsMaterial,
    address_host,
    check_plaintext_listen,
    identity_of_certificate,
    is_loopback,
    material_from_settings,
)
from tests.support.mesh import REPO, free_port
from tests.support.tls import answering_binding, grpcurl

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
def test_the_local_ca_is_private_and_issues_once(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "data" / "tls")
    ca.issue(["app", "gateway", OPERATOR], hosts=["10.0.0.7", "bud-1.internal"])
    assert _mode(ca.directory) == 0o700
    for name in ("app", "gateway", OPERATOR):
        assert _mode(ca.key(name)) == 0o600, name
    assert _mode(ca.ca_key) == 0o600
    first = ca.cert("app").read_bytes()
    ca.issue(["app"])  # kept, not issued again
    assert ca.cert("app").read_bytes() == first

    root = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = x509.load_pem_x509_certificate(first)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == root.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "bud-1.internal"} <= set(sans.get_values_for_type(x509.DNSName))
    ips = set(sans.get_values_for_type(x509.IPAddress))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.7")} <= ips
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://bud/app"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert identity_of_certificate(first) == "app"


def test_an_opened_up_tls_dir_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    LocalCa(directory).issue(["app"])
    assert _mode(directory) == 0o700


def test_settings_take_files_or_the_local_ca(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "elsewhere")
    ca.issue(["engine"])
    files = {"tls_ca_file": ca.ca_cert, "tls_cert_file": ca.cert("engine"), "tls_key_file": ca.key("engine")}
    material = material_from_settings(RuntimeSettings(data_dir=tmp_path / "data", **files))
    assert material is not None and material.identity == "engine"
    assert not (tmp_path / "data" / "tls").exists()  # files given: nothing generated

    local = material_from_settings(RuntimeSettings(data_dir=tmp_path / "data"), identity="gateway")
    assert local is not None and local.identity == "gateway"
    assert (tmp_path / "data" / "tls" / "gateway.key").exists()

    named = material_from_settings(RuntimeSettings(data_dir=tmp_path / "data", tls_server_name="app.bud"))
    assert named is not None and named.channel_options() == [("grpc.ssl_target_name_override", "app.bud")]

    assert material_from_settings(RuntimeSettings(data_dir=tmp_path / "data", tls=False)) is None
    with pytest.raises(SettingsError, match="together"):
        material_from_settings(RuntimeSettings(data_dir=tmp_path, tls_ca_file=ca.ca_cert))


def test_a_certificate_without_a_service_identity_is_refused(tmp_path: Path) -> None:
    """A certificate that names no spiffe://bud/<service> cannot be a service's."""
    ca = LocalCa(tmp_path / "ca")
    ca.issue(["app"])
    # The CA's own certificate: valid PEM, no identity URI.
    assert identity_of_certificate(ca.ca_cert.read_bytes()) is None
    with pytest.raises(SettingsError, match="names no"):
        TlsMaterial.from_files(ca.ca_cert, ca.ca_cert, ca.key("app"))


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50061", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("unix:/tmp/bud.sock", True),
        ("0.0.0.0:50061", False),
        ("[::]:1", False),
        ("10.1.2.3:50071", False),
        ("engine.bud.svc:50071", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_address_host() -> None:
    assert address_host("[::1]:5") == "::1"
    assert address_host("dns:///engine:5") == "engine"
    assert address_host("10.0.0.1:5") == "10.0.0.1"


async def test_plaintext_is_refused_on_a_reachable_address_unless_insecure() -> None:
    with pytest.raises(InsecureListenError, match="refusing to listen without TLS on 0.0.0.0"):
        check_plaintext_listen("0.0.0.0:50071", RuntimeSettings(tls=False))
    check_plaintext_listen("0.0.0.0:50071", RuntimeSettings(tls=False, insecure=True))
    check_plaintext_listen("127.0.0.1:50071", RuntimeSettings(tls=False))
    with pytest.raises(InsecureListenError):
        GrpcServer("0.0.0.0:0", [], tls=None)
    # The gateway's public face (API keys, like its HTTP face) is not a service-to-service port.
    GrpcServer("0.0.0.0:0", [], edge=True)


@pytest.mark.integration
def test_budrt_serve_refuses_plaintext_on_a_reachable_address_and_warns(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
        "BUD_DATA_DIR": str(tmp_path),
        "BUD_TLS": "false",
        "BUD_APP_ADDRESS": f"0.0.0.0:{free_port()}",
        "BUD_DEFAULT_MODEL_NAME": "",
        "BUD_DEFAULT_EMBEDDING_MODEL_NAME": "",
        "BUD_DEFAULT_IMAGE_MODEL_NAME": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "budrt", "serve", "app"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen without TLS on 0.0.0.0" in result.stderr
    assert "TLS between services is OFF" in result.stdout + result.stderr  # logged at every start


@pytest.fixture
async def engine_server(process_tls: LocalCa) -> AsyncIterator[GrpcServer]:
    """A mutual-TLS server (the test process's certificate) hosting an answering EngineService."""
    server = GrpcServer("127.0.0.1:0", [answering_binding(engine_service_pb2_grpc, ENGINE_SERVICE)])
    await server.start()
    yield server
    await server.stop(0)


async def test_the_server_demands_a_client_certificate(
    engine_server: GrpcServer, process_tls: LocalCa
) -> None:
    address = f"127.0.0.1:{engine_server.port}"
    async with service_channel(address) as channel:  # the process's certificate
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    anonymous = grpc.ssl_channel_credentials(root_certificates=process_tls.ca_cert.read_bytes())
    async with grpc.aio.secure_channel(address, anonymous) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await engine_service_pb2_grpc.EngineServiceStub(channel).ListModels(
                engine_service_pb2.ListModelsRequest(), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def _grpcurl(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        grpcurl(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.mark.integration
async def test_grpcurl_with_the_operator_certificate(engine_server: GrpcServer, process_tls: LocalCa) -> None:
    process_tls.issue([OPERATOR])
    address = f"127.0.0.1:{engine_server.port}"
    tls_flags = [
        "-cacert",
        str(process_tls.ca_cert),
        "-cert",
        str(process_tls.cert(OPERATOR)),
        "-key",
        str(process_tls.key(OPERATOR)),
    ]
    code, out = await _grpcurl(*tls_flags, address, "list")
    assert code == 0, out
    assert "bud.engine.v1.EngineService" in out
    code, out = await _grpcurl(*tls_flags, "-d", "{}", address, "bud.engine.v1.EngineService/ListModels")
    assert code == 0, out
    # Without the client certificate, or in plaintext, nothing.
    code, out = await _grpcurl("-cacert", str(process_tls.ca_cert), address, "list")
    assert code != 0
    code, out = await _grpcurl("-plaintext", address, "list")
    assert code != 0
