"""The gateway's settings: its HTTP face and the shared rate-limit state (shared ones, such as
the addresses it dials and the key-hash secret, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field

from budrt.settings import RuntimeSettings


class GatewaySettings(RuntimeSettings):
    """The runtime's settings plus the gateway's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    gateway_http_host: str = "127.0.0.1"
    gateway_http_port: int = 8000
    # Shared rate-limit state; empty = in memory (one gateway). May carry a password.
    redis_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})
