"""The gateway's settings: its HTTP face and the shared rate-limit state (shared ones, such as
the addresses it dials and the key-hash secret, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from budrt.json_face import MAX_RAW_JSON_DEPTH
from budrt.settings import RuntimeSettings
from gateway.cold_start import DEFAULT_COLD_START_QUEUE_LENGTH, DEFAULT_COLD_START_TIMEOUT_S
from gateway.load import DEFAULT_LOAD_REPORT_INTERVAL_S
from gateway.request_limits import RequestLimits
from gateway.transcoder import BODY_TIMEOUT_S, MAX_BODY_BYTES

# The defaults of the generation caps (below); OpenAiServicer uses them when given none.
DEFAULT_MAX_CHOICES = 16
DEFAULT_MAX_TOTAL_TOKENS = 65536
# Rate limits of a key that has none of its own (0: none); OpenAiServicer's defaults too.
DEFAULT_KEY_REQUESTS_PER_MINUTE = 100
DEFAULT_KEY_TOKENS_PER_MINUTE = 0
# The response cache's defaults (below): five minutes, 256 MiB.
DEFAULT_RESPONSE_CACHE_TTL_S = 300.0
DEFAULT_RESPONSE_CACHE_MAX_BYTES = 256 << 20
_LIMITS = RequestLimits()  # the defaults of the request caps (below)


class GatewaySettings(RuntimeSettings):
    """The runtime's settings plus the gateway's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    gateway_http_host: str = "127.0.0.1"
    gateway_http_port: int = 8000
    # The prompt studio's built web app, served at /studio/ (gateway/studio.py); unset: the
    # checkout's studio/dist (`make studio`).
    studio_dir: Path | None = None
    # Shared rate-limit state; empty = in memory (one gateway). May carry a password.
    redis_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})
    # Rate limits of every API key without its own (requests, tokens per minute; 0: none),
    # counted like a key's own limits (exactly across gateways with `redis_url`). A key with its
    # own limit of a kind keeps it.
    default_key_requests_per_minute: int = Field(default=DEFAULT_KEY_REQUESTS_PER_MINUTE, ge=0)
    default_key_tokens_per_minute: int = Field(default=DEFAULT_KEY_TOKENS_PER_MINUTE, ge=0)
    # A deployment's max_concurrency (gateway/concurrency.py): a request finding every slot taken
    # waits at most `concurrency_queue_timeout` seconds, behind at most `concurrency_queue_length`
    # others of the deployment in this gateway, then gets 429 with Retry-After. With `redis_url`
    # slots are leases shared by the gateways, renewed while their calls run; a dead gateway's
    # leases expire after `concurrency_lease_ttl` seconds.
    concurrency_queue_timeout: float = Field(default=30.0, ge=0)
    concurrency_queue_length: int = Field(default=100, ge=0)
    concurrency_lease_ttl: float = Field(default=15.0, gt=0)
    # Cold starts (gateway/cold_start.py): a request for a deployment scaled to zero asks the
    # control plane to wake it and waits at most `cold_start_timeout` seconds (a model loading on
    # CPU takes minutes), behind at most `cold_start_queue_length` others of the deployment in
    # this gateway, then gets 503 with Retry-After.
    cold_start_timeout: float = Field(default=DEFAULT_COLD_START_TIMEOUT_S, ge=0)
    cold_start_queue_length: int = Field(default=DEFAULT_COLD_START_QUEUE_LENGTH, ge=0)
    # This gateway's load (gateway/load.py: in flight, queued, requests per deployment and
    # replica) goes to the control plane every `load_report_interval` seconds, and at once on a
    # deployment's first request after idleness: its autoscaling and scale-to-zero signals
    # (0: no reports).
    load_report_interval: float = Field(default=DEFAULT_LOAD_REPORT_INTERVAL_S, ge=0)
    # Projects' budgets (gateway/budgets.py): seconds one alert's webhook POST may take.
    budget_webhook_timeout_s: float = Field(default=5.0, gt=0)
    # Whether a budget's webhook may be called at a loopback, private or link-local address (the
    # URLs are set by project owners; off: only public addresses).
    budget_webhook_allow_private: bool = False
    # The response cache of deployments with `caching` on (gateway/response_cache.py): an entry
    # lives `response_cache_ttl_s` seconds; the entries' bytes stay under
    # `response_cache_max_bytes` (least recently used out first; 0: no response cache). In this
    # gateway's memory, or in Redis at `redis_url` (shared by the gateways, the bound theirs).
    response_cache_ttl_s: float = Field(default=DEFAULT_RESPONSE_CACHE_TTL_S, gt=0)
    response_cache_max_bytes: int = Field(default=DEFAULT_RESPONSE_CACHE_MAX_BYTES, ge=0)
    # Caps on what one generation request may ask the engine for, checked before rate limits
    # and the engine (INVALID_ARGUMENT): `n` (and `best_of`) choices at most, and n × the
    # request's max_tokens / max_completion_tokens / max_output_tokens at most.
    max_choices: int = Field(default=DEFAULT_MAX_CHOICES, ge=1)
    max_total_tokens: int = Field(default=DEFAULT_MAX_TOTAL_TOKENS, ge=1)
    # Stored responses (`/v1/responses` with `store`) are sent to the app in batches at least
    # this often (seconds); until then this gateway answers reads of them from memory.
    response_flush_interval: float = Field(default=0.2, gt=0)
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
    # Caps on the shape of one OpenAI request (gateway/request_limits.py), checked on the parsed
    # JSON before it is converted (REST) or on the message before the servicer (gRPC); over one
    # the answer is INVALID_ARGUMENT naming the field. Lists: messages (Responses input items),
    # content parts and tool calls (each in all the request's messages), tools, embedding inputs /
    # completion prompts, stop sequences and stop token ids (each); maps: logit_bias, metadata;
    # and how deep a JSON schema nests (tool parameters, response formats; at most the codec's
    # own hard cap).
    max_messages: int = Field(default=_LIMITS.max_messages, ge=1)
    max_content_parts: int = Field(default=_LIMITS.max_content_parts, ge=1)
    max_tool_calls: int = Field(default=_LIMITS.max_tool_calls, ge=1)
    max_tools: int = Field(default=_LIMITS.max_tools, ge=1)
    max_schema_depth: int = Field(default=_LIMITS.max_schema_depth, ge=1, le=MAX_RAW_JSON_DEPTH)
    max_inputs: int = Field(default=_LIMITS.max_inputs, ge=1)
    max_stop_sequences: int = Field(default=_LIMITS.max_stop_sequences, ge=1)
    max_logit_bias: int = Field(default=_LIMITS.max_logit_bias, ge=1)
    max_metadata_entries: int = Field(default=_LIMITS.max_metadata_entries, ge=1)
    # Generated images (gateway/images/): kept `image_retention_hours`, then deleted (an expired
    # image is 404 at once; the sweeper deletes it every `image_sweep_interval_s` seconds). In
    # files under `image_dir` (default <data_dir>/images) or, with `image_store` "s3", in the
    # bucket `image_s3_bucket` under `image_s3_prefix` (`image_s3_endpoint_url` for a non-AWS
    # server; credentials from the environment, boto3's chain). `url` answers are links to the
    # gateway's `/v1/images/{id}/content?token=...`, signed (HMAC-SHA256, a key derived from
    # `key_hash_secret`) and valid `image_url_ttl_s` seconds (at most until the image expires),
    # under `image_public_base_url` (default: the request's own scheme and host).
    image_store: Literal["local", "s3"] = "local"
    image_dir: Path | None = None
    image_s3_bucket: str = ""
    image_s3_prefix: str = "images/"
    image_s3_endpoint_url: str = ""
    image_retention_hours: float = Field(default=24.0, gt=0)
    image_url_ttl_s: float = Field(default=3600.0, gt=0)
    image_sweep_interval_s: float = Field(default=300.0, gt=0)
    image_public_base_url: str = ""
