"""The registry service's gRPC binding, hosted in the app process by `budrt serve app`: the
generated base servicer, so every RPC answers UNIMPLEMENTED (nothing of the registry is built)."""

from __future__ import annotations

from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.grpc_server import ServiceBinding


def bindings() -> list[ServiceBinding]:
    """RegistryService, answering UNIMPLEMENTED to every RPC."""
    return [
        ServiceBinding(registry_pb2_grpc.RegistryServiceServicer(), registry_pb2_grpc.add_RegistryServiceServicer_to_server,
                       registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]),
    ]
