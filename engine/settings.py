"""The engine's settings (shared ones come from `budrt.settings.RuntimeSettings`; the engine
arguments of each model arrive with LoadModel)."""

from __future__ import annotations

from budrt.settings import RuntimeSettings


class EngineSettings(RuntimeSettings):
    """The runtime's settings plus the engine's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    # `budrt up`: run the engine inside the gateway process (the gateway calls it directly, no
    # loopback gRPC hop on the inference path, one process fewer); false = a process of its own.
    engine_in_gateway: bool = True
