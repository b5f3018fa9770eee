"""The app's tables as SQLAlchemy 2.0 typed ORM classes.

The schema itself is created and changed only by the alembic revisions in `app/migrations/`;
these classes must match them (a test compares the two on SQLite and PostgreSQL).

Enum values (runner, status, role) are stored by their protobuf *name*, which is stable in JSON
and readable in a SQL shell. Times are timezone-aware UTC datetimes (see :class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, identical on every dialect, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The single row of the single-row tables.
SINGLETON_ID = 1


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp always handed to Python as an aware UTC datetime.

    PostgreSQL keeps `timestamptz`; SQLite keeps text without a zone, so values are normalised to
    UTC on the way in and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store them without an offset so they sort.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT primary keys are not auto-incremented by SQLite (only INTEGER is the rowid alias).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every app table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Project(Base):
    """A project: groups deployments and API keys."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class Deployment(Base):
    """A deployment: a model (or, later, a prompt) callable by name within its project.

    `spec_version` grows with every change of what the engines must load (source, runner, engine
    args, endpoints); the reconciler writes status only for the spec it acted on. `generation`
    grows only when the model itself changes (source, runner, engine args, caching): it is part
    of the model's name on its engines and of the owner the engines record, so a new generation
    is a new model there and the old one is unloaded by its own owner.
    """

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # ModelSource oneof: which field ("hugging_face_id", "local_path", "builtin",
    # "registry_model_id") and its value. NULL for prompt deployments.
    model_source_kind: Mapped[str | None] = mapped_column(String(32))
    model_source: Mapped[str | None] = mapped_column(Text)
    # PromptTarget, for prompt deployments (`app/prompts/deployments.py`).
    prompt_id: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[int | None] = mapped_column(Integer)
    # The label a prompt deployment follows when it pins no version ("" : the default label).
    prompt_label: Mapped[str | None] = mapped_column(String(64))
    runner: Mapped[str] = mapped_column(String(32))
    # bud.engine.v1.EngineArgs as protobuf JSON (field names as in the .proto; only set fields).
    engine_args: Mapped[dict[str, Any]]
    min_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    autoscale: Mapped[bool] = mapped_column(Boolean, default=False)
    caching: Mapped[bool] = mapped_column(Boolean, default=False)
    requests_per_minute: Mapped[int] = mapped_column(Integer, default=0)
    tokens_per_minute: Mapped[int] = mapped_column(Integer, default=0)
    # Its current prices in micro-dollars (revision 0011; history: DeploymentPrice).
    input_micros_per_million: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_micros_per_million: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    request_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Image deployments (revision 0012): the price per generated image in micro-dollars, the
    # images-per-minute limit (0: none) and the ImageSettings as protobuf JSON (NULL: unset, the
    # platform's defaults apply).
    image_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    images_per_minute: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    image_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str] = mapped_column(Text, default="")
    spec_version: Mapped[int] = mapped_column(Integer, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    # Scaling bounds (revision 0010); NULL: unset, the platform's defaults apply (app settings).
    min_replicas: Mapped[int | None] = mapped_column(Integer)
    max_replicas: Mapped[int | None] = mapped_column(Integer)
    idle_timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    # Replicas the control plane wants now (0: scaled to zero).
    desired_replicas: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Scaled to zero, or loading after a wake: gateways queue requests behind a wake.
    cold_start: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # Read side only: endpoints are written with explicit statements (replacing a list through
    # the ORM would insert the new rows before deleting the old and trip the unique constraint).
    endpoints: Mapped[list[DeploymentEndpoint]] = relationship(
        order_by="DeploymentEndpoint.position", lazy="selectin", viewonly=True
    )


class Engine(Base):
    """A registered engine: a platform resource (platform admins register it; tenants only name
    it by id or let the control plane place their deployments on it)."""

    __tablename__ = "engines"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    address: Mapped[str] = mapped_column(String(255), unique=True)
    # Deployment replicas the control plane may place on it; 0 for no limit.
    max_models: Mapped[int] = mapped_column(Integer, default=0)
    create_time: Mapped[datetime]
    # Its last AnnounceEngine and the end of its lease (NULL: registered by an admin, no lease).
    last_seen: Mapped[datetime | None]
    lease_expire_time: Mapped[datetime | None]


class DeploymentEndpoint(Base):
    """One engine replica of a deployment: a registered engine, and the model's name there.

    `address` is the engine's, copied from the registry when the endpoint is written (engines'
    addresses do not change); `served_model_name` is the platform's, derived from the deployment
    id and generation. (address, served_model_name) is unique across all deployments: one engine
    serves one model under a given name.
    """

    __tablename__ = "deployment_endpoints"
    __table_args__ = (UniqueConstraint("address", "served_model_name"),)

    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    engine_id: Mapped[str] = mapped_column(ForeignKey("engines.id"), index=True)
    address: Mapped[str] = mapped_column(String(255))
    served_model_name: Mapped[str] = mapped_column(String(255))
    # Who placed it: "tenant" (named by the deployment, or its first placement) or "scaler" (the
    # control plane, for min_replicas, min_concurrency or load); revision 0010.
    placed_by: Mapped[str] = mapped_column(String(16), default="tenant", server_default="tenant")
    # Loaded and serving (written by the reconciler with the deployment's status).
    ready: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set when the replica is being removed: out of routing, unloaded once the gateways report
    # nothing in flight on it (or the drain timeout passes).
    draining_since: Mapped[datetime | None]


class ScalingEvent(Base):
    """One scaling decision of the control plane (replica added or removed, scaled to zero, woken),
    with its reason; listed by DeploymentService.ListScalingEvents, newest first."""

    __tablename__ = "scaling_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    # ScalingAction by protobuf name.
    action: Mapped[str] = mapped_column(String(32))
    from_replicas: Mapped[int] = mapped_column(Integer)
    to_replicas: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    engine_id: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime]


class ApiKey(Base):
    """A project API key. Only the visible prefix and the keyed hash of the key are stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    # Deployment ids the key may call; empty means all of the project's. Ids of deployments
    # deleted later stay in the list (they match nothing) so a restricted key never widens.
    deployment_ids: Mapped[list[str]]
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]
    last_used_time: Mapped[datetime | None]
    # Per-key limits over all of the key's calls; 0 means no limit.
    requests_per_minute: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tokens_per_minute: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class User(Base):
    """A platform user.

    `token_generation` is carried in the user's access tokens (claim ``gen``) and checked on
    every management call: bumping it (password change, disable, a role taken away) makes every
    token issued before invalid at once.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    create_time: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ProjectMember(Base):
    """A user's role in a project (used from the next increment on)."""

    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(32))
    create_time: Mapped[datetime]


class UsageRecord(Base):
    """One request's usage, as a gateway reported it. Stored once per `request_id`, the key the
    gateway made for the request; `client_request_id` is the client's X-Request-Id (not unique).

    Ids are kept as reported, without foreign keys: usage outlives the keys and deployments it
    names. `day` is the UTC date of `time`, the grouping key of QueryUsage.
    """

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_project_id_day", "project_id", "day"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    client_request_id: Mapped[str] = mapped_column(String(128), default="", server_default="")
    project_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64), default="")
    deployment_id: Mapped[str] = mapped_column(String(64), default="")
    operation: Mapped[str] = mapped_column(String(64), default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    time: Mapped[datetime]
    day: Mapped[str] = mapped_column(String(10))
    # A model call made by a prompt run: the prompt, its version and the prompt deployment named
    # as the reference's `id` ("" / 0 for a direct call; revision 0008).
    prompt_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    prompt_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    prompt_deployment_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Answered from the gateways' response cache (no engine ran: zero tokens).
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What it cost in nano-dollars, at the price in force at `time` (revision 0011).
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Image calls (revision 0012): images generated, their size ("WIDTHxHEIGHT") and steps.
    images: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    image_size: Mapped[str] = mapped_column(String(32), default="", server_default="")
    image_steps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DeploymentPrice(Base):
    """A deployment's price from `effective_time` on: one row per change (the last is the
    deployment's current price). Usage is costed with the row in force at its time. Kept after
    its deployment is deleted, like the usage that names it (no foreign key)."""

    __tablename__ = "deployment_prices"
    __table_args__ = (
        Index("ix_deployment_prices_deployment_id_effective_time", "deployment_id", "effective_time"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(64))
    effective_time: Mapped[datetime]
    input_micros_per_million: Mapped[int] = mapped_column(BigInteger, default=0)
    output_micros_per_million: Mapped[int] = mapped_column(BigInteger, default=0)
    request_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # Per generated image (revision 0012).
    image_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Budget(Base):
    """A spending budget of a project, or of one of its keys (`api_key_id`), per UTC day or month;
    the gateways enforce it (routing feed: RouteProject.budgets)."""

    __tablename__ = "budgets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[str] = mapped_column(String(64), default="")
    period: Mapped[str] = mapped_column(String(16))  # "day" or "month"
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    # Percentages of the limit at which alerts are raised, ascending.
    alert_thresholds: Mapped[list[int]] = mapped_column(JSON)
    hard_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class RoutingState(Base):
    """The single row holding the routing revision.

    Every transaction that changes projects, deployments (status included) or API keys increments
    `revision` first (see `Database.mutation`), so the revision orders all changes and
    WatchRouting can tell when its tables are stale. The one exception is a key's
    `last_used_time`, usage bookkeeping that no gateway table holds.
    """

    __tablename__ = "routing_state"
    __table_args__ = (CheckConstraint(f"id = {SINGLETON_ID}", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger)


class Installation(Base):
    """The single row recording that first-start bootstrap ran (and when)."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint(f"id = {SINGLETON_ID}", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bootstrap_time: Mapped[datetime | None]


class Prompt(Base):
    """A prompt of a project: its versions are immutable and numbered; `latest_version` is the
    highest, written in the transaction that adds it (the prompt's row is locked first, so
    concurrent saves queue and get distinct numbers)."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    # PromptType by protobuf name.
    type: Mapped[str] = mapped_column(String(32))
    default_label: Mapped[str] = mapped_column(String(64))
    latest_version: Mapped[int] = mapped_column(Integer)
    create_user_id: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class PromptVersion(Base):
    """One immutable version of a prompt: its body is bud.prompt.v1.PromptVersion as protobuf JSON
    (field names as in the .proto), integration access keys encrypted (`app/prompts/cipher.py`)."""

    __tablename__ = "prompt_versions"

    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The chat deployment it runs on (no foreign key: a version outlives its deployment).
    deployment_id: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[dict[str, Any]]
    note: Mapped[str] = mapped_column(Text, default="")
    create_user_id: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime]


class PromptLabel(Base):
    """A label pointing at a version of a prompt ("latest" is never stored: it is computed)."""

    __tablename__ = "prompt_labels"

    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    update_user_id: Mapped[str] = mapped_column(String(64), default="")
    update_time: Mapped[datetime]


class PromptLabelChange(Base):
    """One move of a label: created (from NULL), moved, or deleted (to NULL)."""

    __tablename__ = "prompt_label_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(64), default="")
    time: Mapped[datetime]


class StoredResponse(Base):
    """A response of the Responses API kept for GET /v1/responses/{id}, its input items and
    `previous_response_id` (`app.services.responses_store`). `body` is the serialized
    `bud.app.v1.StoredResponse` (the response as answered and the request's own input items):
    tenant data, read and written whole, never queried inside. No foreign key to the project, like
    usage: a batch a gateway delivers late must not fail because its project went meanwhile; such
    rows go with the retention purge (by `create_time`)."""

    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_create_time", "create_time"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64), default="")
    previous_response_id: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime]
    body: Mapped[bytes] = mapped_column(LargeBinary)
