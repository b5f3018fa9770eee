"""Where a model is served: the engine endpoints the control plane loads models on and the
gateways route requests to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One engine endpoint of a deployment: the engine's gRPC address and the name the model is
    served under there."""

    address: str
    served_model_name: str
