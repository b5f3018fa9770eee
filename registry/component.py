"""The registry service as a component of the mesh: a guest of the app's process, fronted over
REST by gateways."""

from __future__ import annotations

from bud.registry.v1 import registry_pb2, registry_pb2_grpc
from budrt.components import Component, Host
from budrt.grpc_server import ServiceBinding

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]


def bindings(host: Host | None = None) -> list[ServiceBinding]:
    """RegistryService: the generated base servicer, so every RPC answers UNIMPLEMENTED (nothing
    of the registry is built)."""
    return [ServiceBinding.unimplemented(registry_pb2_grpc, REGISTRY_SERVICE)]


component = Component(
    name="registry",
    hosted_by="app",
    bindings=bindings,
    rest_services=(REGISTRY_SERVICE,),
)
