"""Conversions between rows and protobuf messages, and of the value types they share: the one set
of row → message conversions, for the management API (`*_to_proto`) and for the gateways' routing
tables (`route_*`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format, timestamp_pb2

from app.db import models
from app.images import ImageDefaults, image_settings_from_json, route_image
from app.pricing import pricing_message, route_pricing, row_price
from app.registry_models import KIND as REGISTRY_KIND
from app.registry_models import pinned_id
from bud.app.v1 import deployment_pb2, project_pb2
from bud.auth.v1 import auth_pb2, routing_pb2, user_pb2
from bud.engine.v1 import engine_service_pb2

_Endpoint = TypeVar("_Endpoint", deployment_pb2.EngineEndpoint, routing_pb2.RouteEndpoint)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp of an aware datetime (None stays None, leaving the field unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    """The aware UTC datetime of a Timestamp."""
    return ts.ToDatetime(tzinfo=UTC)


def engine_args_to_json(args: engine_service_pb2.EngineArgs) -> dict[str, Any]:
    """EngineArgs as stored: protobuf JSON with the .proto field names, set fields only."""
    return json_format.MessageToDict(args, preserving_proto_field_name=True)


def engine_args_from_json(value: dict[str, Any] | None) -> engine_service_pb2.EngineArgs:
    """The EngineArgs stored by :func:`engine_args_to_json`."""
    return json_format.ParseDict(value or {}, engine_service_pb2.EngineArgs())


# Enum values are stored by name: `<enum>_name` gives a value's stored form, `<enum>_value` reads
# it back (ValueError for a name the enum does not have).
runner_name, runner_value = engine_service_pb2.Runner.Name, engine_service_pb2.Runner.Value
status_name, status_value = deployment_pb2.DeploymentStatus.Name, deployment_pb2.DeploymentStatus.Value
role_name, role_value = user_pb2.ProjectRole.Name, user_pb2.ProjectRole.Value

READY = status_name(deployment_pb2.DEPLOYMENT_STATUS_READY)
# Who placed a replica (`deployment_endpoints.placed_by`): the deployment's own endpoints, or
# the control plane (min_replicas, min_concurrency, load).
TENANT = "tenant"
SCALER = "scaler"


def project_to_proto(row: models.Project) -> project_pb2.Project:
    """The Project message of a row."""
    return project_pb2.Project(
        id=row.id,
        name=row.name,
        description=row.description,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )


def model_source_to_proto(kind: str, value: str) -> deployment_pb2.ModelSource:
    """The ModelSource with oneof field `kind` set to `value`."""
    source = deployment_pb2.ModelSource()
    setattr(source, kind, pinned_id(value) if kind == REGISTRY_KIND else value)
    return source


def _endpoints(row: models.Deployment, message: Callable[..., _Endpoint]) -> list[_Endpoint]:
    """The replicas gateways may send a deployment's requests to, in order, as `message`s
    (RouteEndpoint): none while it is scaled to zero; never one being drained; the control
    plane's own replicas once ready (the tenant's are the deployment's status: READY means all
    of them are)."""
    if row.desired_replicas == 0:
        return []
    return [
        message(address=e.address, served_model_name=e.served_model_name)
        for e in row.endpoints
        if e.draining_since is None and (e.placed_by != SCALER or e.ready)
    ]


def deployment_to_proto(
    row: models.Deployment, *, engine_addresses: bool = True
) -> deployment_pb2.Deployment:
    """The Deployment message of a row (its endpoints loaded). `engine_addresses` False (a
    caller who is not a platform admin): the endpoints name their engines by id only — where an
    engine listens on the network is the platform's, not a tenant's, to know."""
    message = deployment_pb2.Deployment(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        endpoints=[
            deployment_pb2.EngineEndpoint(
                engine_id=e.engine_id,
                address=e.address if engine_addresses else "",
                served_model_name=e.served_model_name,
            )
            for e in row.endpoints
            if e.placed_by != SCALER
        ],
        engine_args=engine_args_from_json(row.engine_args),
        runner=runner_value(row.runner),
        scaling=deployment_pb2.ScalingSettings(
            min_concurrency=row.min_concurrency,
            max_concurrency=row.max_concurrency,
            autoscale=row.autoscale,
            min_replicas=row.min_replicas,
            max_replicas=row.max_replicas,
            idle_timeout_seconds=row.idle_timeout_seconds,
        ),
        caching=row.caching,
        rate_limits=deployment_pb2.RateLimits(
            requests_per_minute=row.requests_per_minute,
            tokens_per_minute=row.tokens_per_minute,
            images_per_minute=row.images_per_minute or 0,
        ),
        status=status_value(row.status),
        status_message=row.status_message,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
        ready_replicas=sum(1 for e in row.endpoints if e.ready and e.draining_since is None),
        desired_replicas=(row.desired_replicas or 0) if row.model_source_kind is not None else 0,
        pricing=pricing_message(row_price(row)),
        image=image_settings_from_json(row.image_settings),
    )
    if row.model_source_kind is not None:
        message.model.CopyFrom(model_source_to_proto(row.model_source_kind, row.model_source or ""))
    elif row.prompt_id is not None:
        message.prompt.CopyFrom(
            deployment_pb2.PromptTarget(
                prompt_id=row.prompt_id, version=row.prompt_version or 0, label=row.prompt_label or ""
            )
        )
    return message


def api_key_state(row: models.ApiKey, now: datetime) -> int:
    """ACTIVE, REVOKED or EXPIRED (revocation wins)."""
    if row.revoke_time is not None:
        return auth_pb2.API_KEY_STATE_REVOKED
    if row.expire_time is not None and row.expire_time <= now:
        return auth_pb2.API_KEY_STATE_EXPIRED
    return auth_pb2.API_KEY_STATE_ACTIVE


def _key_fields(row: models.ApiKey) -> dict[str, Any]:
    """The fields ApiKey and RouteKey share: what a key is for and how long it lasts."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "prefix": row.prefix,
        "deployment_ids": list(row.deployment_ids or []),
        "expire_time": to_timestamp(row.expire_time),
        "requests_per_minute": row.requests_per_minute,
        "tokens_per_minute": row.tokens_per_minute,
    }


def api_key_to_proto(row: models.ApiKey, now: datetime) -> auth_pb2.ApiKey:
    """The ApiKey message of a row: never the secret, nor its hash."""
    return auth_pb2.ApiKey(
        **_key_fields(row),
        name=row.name,
        state=api_key_state(row, now),
        create_time=to_timestamp(row.create_time),
        revoke_time=to_timestamp(row.revoke_time),
        last_used_time=to_timestamp(row.last_used_time),
    )


def route_key(row: models.ApiKey) -> routing_pb2.RouteKey:
    """What a gateway needs of a key: its hash, not its secret (which is never stored)."""
    return routing_pb2.RouteKey(**_key_fields(row), key_hash=row.key_hash)


def route_deployment(
    row: models.Deployment, image_defaults: ImageDefaults | None = None
) -> routing_pb2.RouteDeployment:
    """What a gateway needs of a deployment (its endpoints loaded); an image deployment's
    `image` with `image_defaults` (the platform's) filled in."""
    return routing_pb2.RouteDeployment(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        endpoints=_endpoints(row, routing_pb2.RouteEndpoint),
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        ready=row.status == READY,
        create_time=to_timestamp(row.create_time),
        prompt_id=row.prompt_id or "",
        prompt_version=row.prompt_version or 0,
        max_concurrency=row.max_concurrency or 0,
        prompt_label=row.prompt_label or "",
        caching=bool(row.caching),
        cold_start=bool(row.cold_start),
        pricing=route_pricing(row),
        image=route_image(
            row.model_source_kind,
            row.model_source,
            row.runner,
            row.image_settings,
            row.images_per_minute or 0,
            image_defaults or ImageDefaults(),
        ),
    )


def route_project(row: models.Project) -> routing_pb2.RouteProject:
    """What a gateway needs of a project."""
    return routing_pb2.RouteProject(id=row.id, name=row.name)


def user_to_proto(row: models.User) -> user_pb2.User:
    """The User message of a row: never the password hash."""
    return user_pb2.User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        platform_admin=row.platform_admin,
        create_time=to_timestamp(row.create_time),
        disabled=row.disabled,
    )


def member_to_proto(row: models.ProjectMember, username: str) -> user_pb2.ProjectMember:
    """The ProjectMember message of a row and its user's username."""
    return user_pb2.ProjectMember(
        project_id=row.project_id, user_id=row.user_id, role=role_value(row.role), username=username
    )


def apply_deployment_settings(row: models.Deployment, deployment: deployment_pb2.Deployment) -> None:
    """Writes the settings every deployment has, model or prompt (scaling, caching, rate limits),
    into its row (a model deployment's image settings: `app.services.deployments`)."""
    row.min_concurrency = deployment.scaling.min_concurrency
    row.max_concurrency = deployment.scaling.max_concurrency
    row.autoscale = deployment.scaling.autoscale
    for field in ("min_replicas", "max_replicas", "idle_timeout_seconds"):
        setattr(
            row, field, getattr(deployment.scaling, field) if deployment.scaling.HasField(field) else None
        )
    row.caching = deployment.caching
    row.requests_per_minute = deployment.rate_limits.requests_per_minute
    row.tokens_per_minute = deployment.rate_limits.tokens_per_minute
    row.images_per_minute = deployment.rate_limits.images_per_minute
