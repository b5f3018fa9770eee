"""DeploymentService: models served under a name within a project.

Creating or changing what a deployment loads (source, runner, engine args, caching, endpoints)
sets it PENDING and wakes the reconciler, which loads it on the engines; RPCs never wait for a
load. Names are unique per project. Viewers of a project read its deployments; editors change
them (see `auth.roles`).

Engines are platform resources (`app.services.engines`): an endpoint names a registered engine
by `engine_id`, or a deployment gives none and is placed on one (`app.control.engines.place`).
A tenant never gives an engine address or a model's name on an engine (INVALID_ARGUMENT naming
the field; the values the platform assigned may come back unchanged, as in a read-modify-write).
The model's name on its engines is ``<deployment id>-g<generation>``; `generation` grows when
what is loaded changes (source, runner, engine args, caching), so a new generation is a new
model on the engines, and the old one is unloaded by its own owner. Only platform admins name
paths on an engine's machine (`app.validation.check_path_arguments`).

Scaling settings (`scaling`: replica bounds, idle timeout, autoscale, concurrency) are checked
against the platform's defaults (`app.control.replicas.check_replica_settings`) and act on a live
deployment without a reload: a change kicks the reconciler, whose scaler adds or drains replicas
(`app.control.autoscaler`). `ListScalingEvents` lists its decisions (viewer).

Image deployments (a model running RUNNER_DIFFUSION, `app.images`) take `image` settings,
checked against the platform's defaults; like rate limits and prices they act on a live
deployment through the routing feed, without a reload. `image` on any other deployment is
INVALID_ARGUMENT.
"""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.authz import Access
from app.control import Reconciler
from app.control.engines import EngineModel, engine_models, place, served_model_name
from app.control.events import event_to_proto
from app.control.replicas import ReplicaPolicy, check_replica_settings
from app.convert import (
    apply_deployment_settings,
    deployment_to_proto,
    engine_args_to_json,
    runner_name,
    status_name,
)
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard
from app.images import ImageDefaults, check_image, image_settings_to_json
from app.pricing import apply_pricing, price_history, record_price
from app.prompts import deployments as prompt_deployments
from app.registry_models import KIND as REGISTRY_KIND
from app.registry_models import RegistryModels, pinned_id
from app.services.common import conflicts_as, get_deployment, get_project
from app.services.pagination import fetch_page, fetch_project_page
from app.validation import (
    check_deployment,
    check_endpoints,
    check_path_arguments,
    check_scaling_and_limits,
    check_update_mask,
)
from app.validation import check_model_source as check_deployment_source
from auth.roles import EDITOR, VIEWER
from auth.tokens import Authenticator
from bud.app.v1 import deployment_pb2, deployment_pb2_grpc
from budrt.errors import ServiceError, already_exists, failed_precondition, invalid_argument
from budrt.grpc_server import ServiceBinding

PENDING = status_name(deployment_pb2.DEPLOYMENT_STATUS_PENDING)
WRITABLE_FIELDS = (
    "name",
    "model",
    "prompt",
    "endpoints",
    "engine_args",
    "runner",
    "scaling",
    "caching",
    "rate_limits",
    "pricing",
    "image",
)
# Fields whose change means the engines must load something else.
SPEC_FIELDS = ("model", "prompt", "endpoints", "engine_args", "runner", "caching")
# Fields whose change is a new model on the engines: a new generation.
GENERATION_FIELDS = ("model", "prompt", "engine_args", "runner", "caching")


async def _name_taken(session: AsyncSession, project_id: str, name: str, deployment_id: str = "") -> bool:
    found = await session.scalar(
        select(models.Deployment.id).where(
            models.Deployment.project_id == project_id, models.Deployment.name == name
        )
    )
    return found is not None and found != deployment_id


async def _write_endpoints(
    session: AsyncSession, deployment_id: str, generation: int, engines: list[models.Engine]
) -> None:
    """Replaces the deployment's endpoints with one per engine, under the generation's name."""
    endpoint = models.DeploymentEndpoint
    name = served_model_name(deployment_id, generation)
    await session.execute(delete(endpoint).where(endpoint.deployment_id == deployment_id))
    await session.execute(
        insert(models.DeploymentEndpoint),
        [
            {
                "deployment_id": deployment_id,
                "position": i,
                "engine_id": engine.id,
                "address": engine.address,
                "served_model_name": name,
            }
            for i, engine in enumerate(engines)
        ],
    )


def _apply(row: models.Deployment, deployment: deployment_pb2.Deployment, source: tuple[str, str]) -> None:
    """Copies a validated message's writable fields (endpoints aside) onto a row."""
    row.name = deployment.name
    row.model_source_kind, row.model_source = source
    row.prompt_id = row.prompt_version = None
    row.runner = runner_name(deployment.runner)
    row.engine_args = engine_args_to_json(deployment.engine_args)
    apply_deployment_settings(row, deployment)
    apply_pricing(row, deployment.pricing, "deployment.pricing")
    row.image_settings = image_settings_to_json(deployment)


async def insert_deployment(
    session: AsyncSession,
    project_id: str,
    deployment: deployment_pb2.Deployment,
    registry_pin: str | None = None,
    image_defaults: ImageDefaults | None = None,
) -> models.Deployment:
    """Validates and inserts a deployment (status PENDING); returns it with its endpoints.
    `registry_pin`: the resolved source of a registry model (`app.registry_models`), asked of
    the registry before the transaction began; `image_defaults`: the platform's image settings.

    Raises ServiceError: INVALID_ARGUMENT, NOT_FOUND (project), ALREADY_EXISTS (name),
    FAILED_PRECONDITION (no engine with room; a registry model not resolved).
    """
    source = check_deployment(deployment, image_defaults=image_defaults)
    if source[0] == REGISTRY_KIND:
        if registry_pin is None or pinned_id(registry_pin) != source[1]:
            raise failed_precondition(
                "a registry model is deployed through DeploymentService (its scan is checked)",
                param="deployment.model.registry_model_id",
            )
        source = (REGISTRY_KIND, registry_pin)
    engine_ids = check_endpoints(list(deployment.endpoints), "deployment.endpoints")
    await get_project(session, project_id)
    if await _name_taken(session, project_id, deployment.name):
        raise _name_conflict(deployment.name)
    deployment_id = ids.new_id(ids.DEPLOYMENT)
    engines = await place(session, deployment_id, engine_ids, "deployment.endpoints")
    now = utcnow()
    row = models.Deployment(
        id=deployment_id,
        project_id=project_id,
        status=PENDING,
        status_message="",
        spec_version=1,
        generation=1,
        desired_replicas=len(engines),
        create_time=now,
        update_time=now,
    )
    _apply(row, deployment, source)
    session.add(row)
    await session.flush()
    await _write_endpoints(session, deployment_id, row.generation, engines)
    await record_price(session, row, now)
    await session.refresh(row, ["endpoints"])
    return row


def _conflict(err: IntegrityError, name: str) -> Exception:
    """ALREADY_EXISTS for a unique violation that a concurrent transaction caused. Only the
    deployment's name can clash (models' names on engines contain the deployment's own id), and
    the answer never names another deployment."""
    return _name_conflict(name)


def _name_conflict(name: str) -> Exception:
    return already_exists(
        f"a deployment named {name!r} already exists in the project", param="deployment.name"
    )


class DeploymentServicer(deployment_pb2_grpc.DeploymentServiceServicer):
    """Implements bud.app.v1.DeploymentService."""

    def __init__(
        self,
        db: Database,
        reconciler: Reconciler,
        auth: Authenticator,
        registry: RegistryModels | None = None,
        policy: ReplicaPolicy | None = None,
        default_pricing: deployment_pb2.Pricing | None = None,
        image_defaults: ImageDefaults | None = None,
    ) -> None:
        # What a deployment created without `pricing` costs (AppSettings' defaults).
        self._default_pricing = default_pricing or deployment_pb2.Pricing()
        # What an image deployment's unset `image` fields take (AppSettings' defaults).
        self._image_defaults = image_defaults or ImageDefaults()
        self._reconciler = reconciler
        self._access = Access(db, auth)
        self._registry = registry
        self._policy = policy or ReplicaPolicy()

    async def _registry_pin(self, deployment: deployment_pb2.Deployment) -> str | None:
        """The resolved source when the deployment names a registry model (asked before any
        transaction: the registry re-hashes the files, and shares the database)."""
        if not deployment.HasField("model") or deployment.model.WhichOneof("source") != REGISTRY_KIND:
            return None
        param = "deployment.model.registry_model_id"
        check_deployment_source(deployment.model, "deployment.model")
        if self._registry is None:
            raise failed_precondition(
                "registry models cannot be deployed here: the registry does not run in this app", param=param
            )
        return await self._registry.pin(deployment.model.registry_model_id, param)

    async def CreateDeployment(
        self, request: deployment_pb2.CreateDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.CreateDeploymentResponse:
        """Creates a deployment (PENDING) and asks the reconciler to load it. Editor."""
        caller = await self._access.caller(context, request, "project_id")
        deployment = request.deployment
        if deployment.project_id and deployment.project_id != request.project_id:
            raise invalid_argument(
                "deployment.project_id differs from project_id", param="deployment.project_id"
            )
        check_scaling_and_limits(deployment)
        check_image(deployment, self._image_defaults)
        check_replica_settings(self._policy, deployment, named_endpoints=len(deployment.endpoints))
        pin = await self._registry_pin(deployment)
        if not deployment.HasField("pricing"):
            deployment.pricing.CopyFrom(self._default_pricing)
        with conflicts_as(lambda err: _conflict(err, deployment.name)):
            async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
                if deployment.HasField("prompt"):  # a prompt deployment: app/prompts/deployments.py
                    row = await prompt_deployments.insert(session, caller, request.project_id, deployment)
                else:
                    check_path_arguments(deployment, caller.admin)
                    row = await insert_deployment(
                        session, request.project_id, deployment, pin, self._image_defaults
                    )
                reply = deployment_pb2.CreateDeploymentResponse(
                    deployment=deployment_to_proto(row, engine_addresses=caller.admin)
                )
        self._reconciler.kick()
        return reply

    async def GetDeployment(
        self, request: deployment_pb2.GetDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.GetDeploymentResponse:
        """One deployment (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "deployment_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            row = await get_deployment(session, request.project_id, request.deployment_id)
            message = deployment_to_proto(row, engine_addresses=caller.admin)
            message.pricing_history.extend(await price_history(session, row.id))
            return deployment_pb2.GetDeploymentResponse(deployment=message)

    async def ListDeployments(
        self, request: deployment_pb2.ListDeploymentsRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.ListDeploymentsResponse:
        """A project's deployments in creation order, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            rows, token = await fetch_project_page(
                session, models.Deployment, "deployments", request.project_id, request
            )
            return deployment_pb2.ListDeploymentsResponse(
                deployments=[deployment_to_proto(r, engine_addresses=caller.admin) for r in rows],
                next_page_token=token,
            )

    async def UpdateDeployment(
        self, request: deployment_pb2.UpdateDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.UpdateDeploymentResponse:
        """Changes the fields named in update_mask (all writable fields when empty; nested paths
        such as ``rate_limits.requests_per_minute`` work). A change of what the engines load sets
        the deployment PENDING, reloads it and unloads endpoints it no longer has. Editor."""
        caller = await self._access.caller(context, request, "deployment.id", "deployment.project_id")
        patch = request.deployment
        paths = check_update_mask(
            request.update_mask, deployment_pb2.Deployment.DESCRIPTOR, WRITABLE_FIELDS, nested=True
        )
        removed: list[EngineModel] = []
        # Resolved before the transaction; a refusal counts only when the model is not the one
        # the deployment already has (that one keeps its pin: an update of other fields, or an
        # empty mask repeating the model, is not refused because the model was rescanned).
        pin: str | None = None
        pin_error: ServiceError | None = None
        if any(p.split(".")[0] == "model" for p in paths):
            try:
                pin = await self._registry_pin(patch)
            except ServiceError as err:
                pin_error = err
        with conflicts_as(lambda err: _conflict(err, patch.name)):
            async with self._access.project(
                caller, patch.project_id, EDITOR, kind="mutation", param="deployment.project_id"
            ) as session:
                row = await get_deployment(session, patch.project_id, patch.id, param="deployment.id")
                current = deployment_to_proto(row)
                merged = deployment_pb2.Deployment()
                merged.CopyFrom(current)
                field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                    patch, merged, replace_message_field=True, replace_repeated_field=True
                )
                check_scaling_and_limits(merged)
                check_image(merged, self._image_defaults)
                check_replica_settings(self._policy, merged, named_endpoints=len(merged.endpoints))
                scaling_changed = merged.scaling != current.scaling
                if merged.HasField("prompt") or row.prompt_id is not None:
                    scaling_changed = False  # a prompt deployment has no replicas
                    row = await prompt_deployments.update(session, caller, row, merged)
                    return deployment_pb2.UpdateDeploymentResponse(
                        deployment=deployment_to_proto(row, engine_addresses=caller.admin)
                    )
                source = check_deployment(merged, image_defaults=self._image_defaults)
                if source[0] == REGISTRY_KIND:
                    if (
                        row.model_source_kind == REGISTRY_KIND
                        and pinned_id(row.model_source or "") == source[1]
                    ):
                        source = (REGISTRY_KIND, row.model_source or "")  # the same model: pinned as it was
                    elif pin is not None and pinned_id(pin) == source[1]:
                        source = (REGISTRY_KIND, pin)
                    elif pin_error is not None:
                        raise pin_error
                    else:
                        raise failed_precondition(
                            "the registry model was not resolved", param="deployment.model.registry_model_id"
                        )
                check_path_arguments(merged, caller.admin, before=current)
                engine_ids = check_endpoints(
                    list(merged.endpoints), "deployment.endpoints", assigned=list(current.endpoints)
                )
                # Only the engines are the caller's: the rest of each endpoint is the platform's.
                del merged.endpoints[:]
                merged.endpoints.extend(deployment_pb2.EngineEndpoint(engine_id=e) for e in engine_ids)
                compared = deployment_pb2.Deployment()
                compared.CopyFrom(current)
                del compared.endpoints[:]
                compared.endpoints.extend(
                    deployment_pb2.EngineEndpoint(engine_id=e.engine_id) for e in current.endpoints
                )
                spec_changed = any(_field_value(compared, f) != _field_value(merged, f) for f in SPEC_FIELDS)
                new_generation = any(
                    _field_value(compared, f) != _field_value(merged, f) for f in GENERATION_FIELDS
                )
                renamed = merged.name != current.name
                if renamed and await _name_taken(session, row.project_id, merged.name, row.id):
                    raise _name_conflict(merged.name)
                if merged == compared:
                    discard(session)
                    return deployment_pb2.UpdateDeploymentResponse(deployment=current)
                old_replicas = engine_models(row)
                _apply(row, merged, source)
                row.update_time = utcnow()
                await record_price(session, row, row.update_time)
                if spec_changed:
                    engines = await place(
                        session,
                        row.id,
                        engine_ids,
                        "deployment.endpoints",
                        current={r.engine_id for r in old_replicas},
                    )
                    if new_generation:
                        row.generation += 1
                    await _write_endpoints(session, row.id, row.generation, engines)
                    # What is loaded changed: the new spec starts serving (a deployment scaled
                    # to zero too); the scaler adds its replicas again from the floor.
                    row.desired_replicas = len(engines)
                    row.cold_start = False
                    # Engines the deployment leaves; on those it keeps, the reconciler unloads an
                    # older generation itself, before loading the new one.
                    kept = {e.id for e in engines}
                    removed = [r for r in old_replicas if r.engine_id not in kept]
                    row.spec_version += 1
                    row.status, row.status_message = PENDING, ""
                await session.flush()
                await session.refresh(row, ["endpoints"])
                reply = deployment_pb2.UpdateDeploymentResponse(
                    deployment=deployment_to_proto(row, engine_addresses=caller.admin)
                )
        if spec_changed:
            self._reconciler.unload(removed)
        if spec_changed or scaling_changed:
            # Scaling settings act on a live deployment at the next pass: now.
            self._reconciler.kick()
        return reply

    async def DeleteDeployment(
        self, request: deployment_pb2.DeleteDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.DeleteDeploymentResponse:
        """Deletes a deployment and unloads its model from its engines (in the background, best
        effort). API keys restricted to it keep its id, which then matches nothing. Editor."""
        caller = await self._access.caller(context, request, "project_id", "deployment_id")
        async with self._access.project(caller, request.project_id, EDITOR, kind="mutation") as session:
            row = await get_deployment(session, request.project_id, request.deployment_id)
            replicas = engine_models(row)
            await session.execute(
                delete(models.DeploymentEndpoint).where(models.DeploymentEndpoint.deployment_id == row.id)
            )
            await session.execute(delete(models.Deployment).where(models.Deployment.id == row.id))
        self._reconciler.unload(replicas)
        return deployment_pb2.DeleteDeploymentResponse()

    async def ListScalingEvents(
        self, request: deployment_pb2.ListScalingEventsRequest, context: grpc.aio.ServicerContext
    ) -> deployment_pb2.ListScalingEventsResponse:
        """A deployment's scaling events, newest first, paginated (viewer)."""
        caller = await self._access.caller(context, request, "project_id", "deployment_id")
        async with self._access.project(caller, request.project_id, VIEWER) as session:
            row = await get_deployment(session, request.project_id, request.deployment_id)
            event = models.ScalingEvent
            rows, token = await fetch_page(
                session,
                select(event).where(event.deployment_id == row.id),
                event.id,
                f"scaling_events/{row.id}",
                request,
                newest_first=True,
            )
            return deployment_pb2.ListScalingEventsResponse(
                events=[event_to_proto(r) for r in rows], next_page_token=token
            )


def _field_value(message: deployment_pb2.Deployment, name: str) -> object:
    """A field's value, comparable across messages (oneof members unset compare equal)."""
    value = getattr(message, name)
    if name in ("model", "prompt"):
        return value.SerializeToString(deterministic=True) if message.HasField(name) else None
    if name == "endpoints":
        return [e.engine_id for e in value]
    if name == "engine_args":
        return value.SerializeToString(deterministic=True)
    return value


def binding(
    db: Database,
    reconciler: Reconciler,
    auth: Authenticator,
    registry: RegistryModels | None = None,
    policy: ReplicaPolicy | None = None,
    default_pricing: deployment_pb2.Pricing | None = None,
    image_defaults: ImageDefaults | None = None,
) -> ServiceBinding:
    """DeploymentService, ready for `GrpcServer`; `registry`: how registry models are resolved;
    `policy`: the platform's scaling defaults and limits; `default_pricing`: the price of a
    deployment created without one; `image_defaults`: the platform's image settings."""
    return ServiceBinding(
        servicer=DeploymentServicer(db, reconciler, auth, registry, policy, default_pricing, image_defaults),
        add_to_server=deployment_pb2_grpc.add_DeploymentServiceServicer_to_server,
        descriptor=deployment_pb2.DESCRIPTOR.services_by_name["DeploymentService"],
    )
