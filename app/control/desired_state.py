"""What the model deployments ask the engines for, read at the start of each reconcile pass."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select

from app.control.engines import EngineModel, engine_models, model_owner
from app.convert import engine_args_from_json, runner_value
from app.db import models
from app.db.session import Database
from app.images import DIFFUSION, effective_runner
from app.registry_models import KIND as REGISTRY_KIND
from app.registry_models import engine_source as registry_engine_source
from bud.engine.v1 import engine_service_pb2


def engine_source(kind: str, value: str) -> engine_service_pb2.ModelSource:
    """The LoadModel source of a deployment's stored model source (the `ModelSource` oneof field
    name and its value)."""
    source = engine_service_pb2.ModelSource()
    if kind == "hugging_face_id":
        source.hugging_face.id = value
    elif kind == REGISTRY_KIND:
        return registry_engine_source(value)
    elif kind in ("builtin", "local_path"):
        setattr(source, kind, value)
    else:
        raise ValueError(f"unknown model source kind {kind!r}")
    return source


def load_runner(row: models.Deployment) -> int:
    """The runner to load with: the deployment's; a builtin diffusion pipeline (tiny-diffusion)
    left unspecified is loaded as RUNNER_DIFFUSION, which the engine needs to pick its diffusers
    runner (language models left unspecified stay so: vLLM picks from the architecture)."""
    runner = runner_value(row.runner)
    effective = effective_runner(row.model_source_kind or "", row.model_source or "", runner)
    return effective if effective == DIFFUSION else runner


def load_args(row: models.Deployment) -> engine_service_pb2.EngineArgs:
    """The engine args to load with. `caching` turns prefix caching on unless the engine args say
    otherwise; caching off leaves the engine's default alone."""
    args = engine_args_from_json(row.engine_args)
    if row.caching and not args.HasField("enable_prefix_caching"):
        args.enable_prefix_caching = True
    return args


@dataclass(frozen=True)
class DesiredModel:
    """What one model deployment asks the engines for, as read at the start of a pass."""

    deployment_id: str
    spec_version: int
    generation: int
    status: str
    status_message: str
    source: engine_service_pb2.ModelSource
    runner: int
    args: engine_service_pb2.EngineArgs
    endpoints: tuple[EngineModel, ...]
    # Scaling settings (None: unset, the platform's default) and the control plane's state.
    min_replicas: int | None = None
    max_replicas: int | None = None
    idle_timeout_seconds: int | None = None
    min_concurrency: int = 0
    autoscale: bool = False
    desired_replicas: int = 1
    cold_start: bool = False

    @property
    def owner(self) -> engine_service_pb2.ModelOwner:
        """The owner this generation's models are loaded for."""
        return model_owner(self.deployment_id, self.generation)

    @property
    def fingerprint(self) -> str:
        """Identifies what gets loaded: changes with source, runner or args."""
        digest = hashlib.sha256()
        digest.update(self.source.SerializeToString(deterministic=True))
        digest.update(b"\0" + str(self.runner).encode() + b"\0")
        digest.update(self.args.SerializeToString(deterministic=True))
        return digest.hexdigest()

    @classmethod
    def of(cls, row: models.Deployment) -> DesiredModel:
        """From a deployment row (its endpoints loaded)."""
        return cls(
            deployment_id=row.id,
            spec_version=row.spec_version,
            generation=row.generation,
            status=row.status,
            status_message=row.status_message,
            source=engine_source(row.model_source_kind or "", row.model_source or ""),
            runner=load_runner(row),
            args=load_args(row),
            endpoints=tuple(engine_models(row)),
            min_replicas=row.min_replicas,
            max_replicas=row.max_replicas,
            idle_timeout_seconds=row.idle_timeout_seconds,
            min_concurrency=row.min_concurrency,
            autoscale=row.autoscale,
            desired_replicas=row.desired_replicas,
            cold_start=row.cold_start,
        )


async def read_desired(db: Database) -> list[DesiredModel]:
    """Every model deployment, in one snapshot."""
    async with db.snapshot() as session:
        rows = (
            await session.scalars(
                select(models.Deployment).where(models.Deployment.model_source_kind.is_not(None))
            )
        ).all()
        return [DesiredModel.of(row) for row in rows]
