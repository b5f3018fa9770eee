"""Deployment status: where each endpoint stands after a pass, the status of a deployment that
follows from its endpoints, and writing it for the spec version the pass acted on."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import update

from app.control.desired_state import DesiredModel
from app.control.engines import EngineModel
from app.convert import status_name
from app.db import models
from app.db.session import Database, discard
from bud.app.v1 import deployment_pb2

log = logging.getLogger(__name__)

PENDING = status_name(deployment_pb2.DEPLOYMENT_STATUS_PENDING)
LOADING = status_name(deployment_pb2.DEPLOYMENT_STATUS_LOADING)
READY = status_name(deployment_pb2.DEPLOYMENT_STATUS_READY)
FAILED = status_name(deployment_pb2.DEPLOYMENT_STATUS_FAILED)
SCALED_TO_ZERO = status_name(deployment_pb2.DEPLOYMENT_STATUS_SCALED_TO_ZERO)

# What a tenant reads when an engine cannot be reached: the connection's own error ("connection
# refused", "HTTP/1 server", ...) goes to the app's log only, so status messages cannot map the
# internal network.
ENGINE_UNAVAILABLE = "engine unavailable; retrying"

OutcomeState = Literal["ready", "loading", "failed", "unreachable"]


@dataclass(frozen=True)
class Outcome:
    """Where one endpoint stands after a pass."""

    state: OutcomeState
    message: str = ""


def aggregate(endpoints: Sequence[EngineModel], outcomes: Sequence[Outcome]) -> tuple[str, str]:
    """The deployment status of its endpoints' outcomes: FAILED if one failed, READY if all are
    ready, LOADING if one is loading, else PENDING (engines unreachable). Messages name the
    engine by its registry id, never by address, and never carry a connection error (see
    `ENGINE_UNAVAILABLE`)."""
    pairs = list(zip(endpoints, outcomes, strict=True))
    notes = [f"engine {e.engine_id}: {o.message}" for e, o in pairs if o.state != "ready"]
    states = {o.state for o in outcomes}
    if "failed" in states:
        return FAILED, "; ".join(
            f"engine {e.engine_id}: {o.message}" for e, o in pairs if o.state == "failed"
        )
    if states == {"ready"}:
        return READY, ""
    if "loading" in states:
        return LOADING, "; ".join(notes)
    return PENDING, "; ".join(notes)


async def write_status(
    db: Database,
    model: DesiredModel,
    status: str,
    message: str,
    ready: Mapping[tuple[str, str], bool] | None = None,
) -> bool:
    """Writes the status for the spec version acted on, and which replicas (address, model name)
    are `ready`; False if the deployment has since changed or gone. READY or FAILED ends a cold
    start (the gateways stop queueing behind a wake)."""
    values: dict[str, object] = {"status": status, "status_message": message}
    if status in (READY, FAILED):
        values["cold_start"] = False
    async with db.mutation() as session:
        result = await session.execute(
            update(models.Deployment)
            .where(
                models.Deployment.id == model.deployment_id,
                models.Deployment.spec_version == model.spec_version,
            )
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            discard(session)
            return False
        endpoint = models.DeploymentEndpoint
        for (address, name), is_ready in (ready or {}).items():
            await session.execute(
                update(endpoint)
                .where(
                    endpoint.deployment_id == model.deployment_id,
                    endpoint.address == address,
                    endpoint.served_model_name == name,
                )
                .values(ready=is_ready)
            )
    log.info(
        "deployment status",
        extra={"deployment": model.deployment_id, "status": status, "status_message": message},
    )
    return True


async def deployment_exists(db: Database, deployment_id: str) -> bool:
    """Whether the deployment is still there."""
    async with db.snapshot() as session:
        return await session.get(models.Deployment, deployment_id) is not None
