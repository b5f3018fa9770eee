"""The prompt services' gRPC bindings, hosted in the app process by `budrt serve app`: the
generated base servicers, so every RPC answers UNIMPLEMENTED (nothing of prompts is built)."""

from __future__ import annotations

from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.grpc_server import ServiceBinding


def bindings() -> list[ServiceBinding]:
    """PromptService and PromptExecutionService, both answering UNIMPLEMENTED to every RPC."""
    return [
        ServiceBinding(prompt_pb2_grpc.PromptServiceServicer(), prompt_pb2_grpc.add_PromptServiceServicer_to_server,
                       prompt_pb2.DESCRIPTOR.services_by_name["PromptService"]),
        ServiceBinding(prompt_pb2_grpc.PromptExecutionServiceServicer(),
                       prompt_pb2_grpc.add_PromptExecutionServiceServicer_to_server,
                       prompt_pb2.DESCRIPTOR.services_by_name["PromptExecutionService"]),
    ]
