"""The gateway's settings: its HTTP face and the shared rate-limit state (shared ones, such as
the addresses it dials and the key-hash secret, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field

from budrt.settings import RuntimeSettings

# The defaults of the generation caps (below); OpenAiServicer uses them when given none.
DEFAULT_MAX_CHOICES = 16
DEFAULT_MAX_TOTAL_TOKENS = 65536


class GatewaySettings(RuntimeSettings):
    """The runtime's settings plus the gateway's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    gateway_http_host: str = "127.0.0.1"
    gateway_http_port: int = 8000
    # Shared rate-limit state; empty = in memory (one gateway). May carry a password.
    redis_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})
    # Caps on what one generation request may ask the engine for, checked before rate limits
    # and the engine (INVALID_ARGUMENT): `n` (and `best_of`) choices at most, and n × the
    # request's max_tokens / max_completion_tokens / max_output_tokens at most.
    max_choices: int = Field(default=DEFAULT_MAX_CHOICES, ge=1)
    max_total_tokens: int = Field(default=DEFAULT_MAX_TOTAL_TOKENS, ge=1)
