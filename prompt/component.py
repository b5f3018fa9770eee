"""The prompt execution service as a component of the mesh: a guest of the app's process (one
process and one database pool fewer; it keeps no state outside the database), fronted over REST
by gateways. Prompt authoring (PromptService) is data the app owns: `app/services/prompts.py`."""

from __future__ import annotations

from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.components import Component, Host
from budrt.grpc_server import ServiceBinding

PROMPT_EXECUTION_SERVICE = prompt_pb2.DESCRIPTOR.services_by_name["PromptExecutionService"]


def bindings(host: Host | None = None) -> list[ServiceBinding]:
    """PromptExecutionService: the generated base servicer, so every RPC answers UNIMPLEMENTED
    (executing prompts is part 2)."""
    return [ServiceBinding.unimplemented(prompt_pb2_grpc, PROMPT_EXECUTION_SERVICE)]


component = Component(
    name="prompt",
    hosted_by="app",
    bindings=bindings,
    rest_services=(PROMPT_EXECUTION_SERVICE,),
)
