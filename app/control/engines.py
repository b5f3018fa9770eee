"""Engines as platform resources, as the control plane uses them: the names and owners of the
models it loads on engines, where a deployment's replicas go (placement on registered engines),
and the engine the embedded mesh is configured with.

A model's name on an engine is the platform's, ``<deployment id>-g<generation>``, and the engine
records its owner (deployment id and generation, `ModelOwner`): no tenant input reaches either,
so no deployment can name, replace or unload another's model.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.db import models
from app.db.models import utcnow
from bud.engine.v1 import engine_service_pb2
from budrt.errors import Reason, failed_precondition, invalid_argument

# Name of the engine registered for the settings' `engine_address` (when that name is free).
DEFAULT_ENGINE_NAME = "default"


def served_model_name(deployment_id: str, generation: int) -> str:
    """The model's name on its engines for this generation of the deployment."""
    return f"{deployment_id}-g{generation}"


def model_owner(deployment_id: str, generation: int) -> engine_service_pb2.ModelOwner:
    """The owner the engines record for this generation of the deployment."""
    return engine_service_pb2.ModelOwner(deployment_id=deployment_id, generation=generation)


@dataclass(frozen=True)
class EngineModel:
    """One replica of a deployment: the engine, and the model's name and owner there."""

    engine_id: str
    address: str
    served_model_name: str
    deployment_id: str
    generation: int
    # Who placed it ("tenant" or "scaler"), whether it is serving, whether it is being removed.
    placed_by: str = "tenant"
    ready: bool = False
    draining: bool = False

    @property
    def owner(self) -> engine_service_pb2.ModelOwner:
        return model_owner(self.deployment_id, self.generation)


def engine_models(row: models.Deployment) -> list[EngineModel]:
    """A deployment's replicas (its endpoints loaded), in order."""
    return [
        EngineModel(
            e.engine_id,
            e.address,
            e.served_model_name,
            row.id,
            row.generation,
            e.placed_by,
            e.ready,
            e.draining_since is not None,
        )
        for e in row.endpoints
    ]


async def engine_models_of(session: AsyncSession, deployment_ids: Select[tuple[str]]) -> list[EngineModel]:
    """The replicas of the deployments `deployment_ids` selects (to unload them after a delete)."""
    endpoint, deployment = models.DeploymentEndpoint, models.Deployment
    rows = await session.execute(
        select(
            endpoint.engine_id,
            endpoint.address,
            endpoint.served_model_name,
            endpoint.deployment_id,
            deployment.generation,
        )
        .join(deployment, deployment.id == endpoint.deployment_id)
        .where(endpoint.deployment_id.in_(deployment_ids))
    )
    return [EngineModel(*row) for row in rows]


async def _loads(session: AsyncSession, except_deployment: str) -> dict[str, int]:
    """Replicas per engine, not counting those of `except_deployment` (being rewritten)."""
    endpoint = models.DeploymentEndpoint
    rows = await session.execute(
        select(endpoint.engine_id, func.count())
        .where(endpoint.deployment_id != except_deployment)
        .group_by(endpoint.engine_id)
    )
    return {engine_id: count for engine_id, count in rows.all()}


def lease_active(engine: models.Engine, now: datetime) -> bool:
    """Whether the control plane may place replicas on the engine: it holds no lease (registered
    by an admin, or the configured engine) or its lease has not ended."""
    return engine.lease_expire_time is None or engine.lease_expire_time > now


def _has_room(engine: models.Engine, load: int) -> bool:
    return engine.max_models == 0 or load < engine.max_models


async def place(
    session: AsyncSession,
    deployment_id: str,
    engine_ids: Sequence[str],
    param: str,
    current: Collection[str] = (),
) -> list[models.Engine]:
    """The registered engines a deployment's replicas go on: those `engine_ids` names (each must
    exist, hold a live lease or none, and have room, unless the deployment is on it already:
    `current`), or, when it names none, the one live engine with the most room left (engines
    without a limit first, then the least loaded; the oldest on a tie).

    The engines' rows are locked (PostgreSQL), so concurrent placements cannot overfill one.
    Raises INVALID_ARGUMENT (unknown engine, ``<param>[i].engine_id``) and FAILED_PRECONDITION
    (NO_ENGINE_CAPACITY when there is no room, ENGINE_LEASE_EXPIRED for a named engine whose
    lease ended).
    """
    engines = {
        e.id: e
        for e in (await session.scalars(select(models.Engine).order_by(models.Engine.id).with_for_update()))
    }
    loads = await _loads(session, deployment_id)
    now = utcnow()
    if engine_ids:
        chosen = []
        for i, engine_id in enumerate(engine_ids):
            engine = engines.get(engine_id)
            if engine is None:
                raise invalid_argument(f"unknown engine {engine_id!r}", param=f"{param}[{i}].engine_id")
            if engine_id not in current and not lease_active(engine, now):
                raise failed_precondition(
                    f"engine {engine_id!r} stopped announcing itself (its lease ended)",
                    reason=Reason.ENGINE_LEASE_EXPIRED,
                    param=f"{param}[{i}].engine_id",
                )
            if engine_id not in current and not _has_room(engine, loads.get(engine_id, 0)):
                raise failed_precondition(
                    f"engine {engine_id!r} has no room for another model",
                    reason=Reason.NO_ENGINE_CAPACITY,
                    param=f"{param}[{i}].engine_id",
                )
            chosen.append(engine)
        return chosen
    candidates = [e for e in engines.values() if lease_active(e, now) and _has_room(e, loads.get(e.id, 0))]
    if not candidates:
        raise failed_precondition(
            "no registered engine has room for another model; ask a platform admin",
            reason=Reason.NO_ENGINE_CAPACITY,
            param=param,
        )

    def room(engine: models.Engine) -> tuple[int, int]:
        load = loads.get(engine.id, 0)
        return (0 if engine.max_models == 0 else 1, load - engine.max_models if engine.max_models else load)

    return [min(candidates, key=room)]


async def place_another(session: AsyncSession, deployment_id: str) -> models.Engine | None:
    """The registered engine another replica of the deployment goes on: one it is not on yet,
    with room and a live lease (or none), the one with the most room (as `place`); None when no
    engine has room. Counts every replica (this deployment's too); rows are locked as in
    `place`."""
    engines = list(await session.scalars(select(models.Engine).order_by(models.Engine.id).with_for_update()))
    endpoint = models.DeploymentEndpoint
    rows = await session.execute(select(endpoint.engine_id, func.count()).group_by(endpoint.engine_id))
    loads = {engine_id: count for engine_id, count in rows.all()}
    used = set(
        (
            await session.scalars(select(endpoint.engine_id).where(endpoint.deployment_id == deployment_id))
        ).all()
    )
    now = utcnow()
    candidates = [
        e for e in engines if e.id not in used and lease_active(e, now) and _has_room(e, loads.get(e.id, 0))
    ]
    if not candidates:
        return None

    def room(engine: models.Engine) -> tuple[int, int]:
        load = loads.get(engine.id, 0)
        return (0 if engine.max_models == 0 else 1, load - engine.max_models if engine.max_models else load)

    return min(candidates, key=room)


async def ensure_engine(session: AsyncSession, address: str) -> models.Engine | None:
    """Registers the engine at `address` unless one is registered there (the embedded mesh's
    configured engine: settings are platform-admin trust). Named "default", or after its
    address when that name is taken; no capacity limit. Returns the engine it created."""
    if not address or await session.scalar(select(models.Engine.id).where(models.Engine.address == address)):
        return None
    engine_id = ids.new_id(ids.ENGINE)
    taken = set((await session.scalars(select(models.Engine.name))).all())
    name = next(n for n in (DEFAULT_ENGINE_NAME, address[:100], engine_id) if n not in taken)
    engine = models.Engine(id=engine_id, name=name, address=address, max_models=0, create_time=utcnow())
    session.add(engine)
    await session.flush()
    return engine
