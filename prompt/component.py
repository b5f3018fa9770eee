"""The prompt services as a component of the mesh: guests of the app's process (one process and
one database pool fewer; they keep no state outside the database), fronted over REST by gateways."""

from __future__ import annotations

from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.components import Component, Host
from budrt.grpc_server import ServiceBinding

PROMPT_SERVICE = prompt_pb2.DESCRIPTOR.services_by_name["PromptService"]
PROMPT_EXECUTION_SERVICE = prompt_pb2.DESCRIPTOR.services_by_name["PromptExecutionService"]


def bindings(host: Host | None = None) -> list[ServiceBinding]:
    """PromptService and PromptExecutionService: the generated base servicers, so every RPC
    answers UNIMPLEMENTED (nothing of prompts is built)."""
    return [
        ServiceBinding.unimplemented(prompt_pb2_grpc, PROMPT_SERVICE),
        ServiceBinding.unimplemented(prompt_pb2_grpc, PROMPT_EXECUTION_SERVICE),
    ]


component = Component(
    name="prompt",
    hosted_by="app",
    bindings=bindings,
    rest_services=(PROMPT_SERVICE, PROMPT_EXECUTION_SERVICE),
)
