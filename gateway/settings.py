"""The gateway's settings: its HTTP face and the shared rate-limit state (shared ones, such as
the addresses it dials and the key-hash secret, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field

from budrt.settings import RuntimeSettings
from gateway.transcoder import BODY_TIMEOUT_S, MAX_BODY_BYTES

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
    # The HTTP face's limits on slow, large or many clients. A request whose headers take longer
    # than `http_header_timeout` seconds (from the connection, or the end of the previous
    # response, to the headers' end) is answered 408 and its connection closed; one whose body
    # takes longer than `http_body_timeout` seconds in all is answered 408 (OpenAI error JSON on
    # OpenAI routes) and closed; a body over `http_max_body_bytes` is answered 413 before it is
    # parsed (from its Content-Length, else as soon as it passes the cap). Beyond
    # `http_max_connections` open connections (or requests in progress) new requests get 503.
    # Idle keep-alive connections are closed after `http_keep_alive_timeout` seconds.
    http_header_timeout: float = Field(default=10.0, gt=0)
    http_body_timeout: float = Field(default=BODY_TIMEOUT_S, gt=0)
    http_max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    http_max_connections: int = Field(default=2048, ge=1)
    http_keep_alive_timeout: float = Field(default=30.0, gt=0)
