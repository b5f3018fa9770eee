"""Scaling events: every decision of the control plane about a deployment's replicas (added,
removed, scaled to zero, woken) is a row of `scaling_events`, written in the transaction that
makes it, with a reason naming the signal and its value. DeploymentService.ListScalingEvents lists
them, newest first."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app import ids
from app.convert import to_timestamp
from app.db import models
from app.db.models import utcnow
from bud.app.v1 import deployment_pb2

log = logging.getLogger(__name__)

SCALE_UP = deployment_pb2.SCALING_ACTION_SCALE_UP
SCALE_DOWN = deployment_pb2.SCALING_ACTION_SCALE_DOWN
SCALE_TO_ZERO = deployment_pb2.SCALING_ACTION_SCALE_TO_ZERO
WAKE = deployment_pb2.SCALING_ACTION_WAKE


def record(
    session: AsyncSession,
    deployment_id: str,
    action: int,
    from_replicas: int,
    to_replicas: int,
    reason: str,
    engine_id: str = "",
) -> None:
    """Adds an event to the session (committed with the decision it records)."""
    session.add(
        models.ScalingEvent(
            id=ids.new_id(ids.SCALING_EVENT),
            deployment_id=deployment_id,
            action=deployment_pb2.ScalingAction.Name(action),
            from_replicas=from_replicas,
            to_replicas=to_replicas,
            reason=reason,
            engine_id=engine_id,
            create_time=utcnow(),
        )
    )
    log.info(
        "scaling event",
        extra={
            "deployment": deployment_id,
            "action": deployment_pb2.ScalingAction.Name(action),
            "from_replicas": from_replicas,
            "to_replicas": to_replicas,
            "reason": reason,
            "engine_id": engine_id,
        },
    )


def event_to_proto(row: models.ScalingEvent) -> deployment_pb2.ScalingEvent:
    """The ScalingEvent message of a row."""
    return deployment_pb2.ScalingEvent(
        id=row.id,
        deployment_id=row.deployment_id,
        action=deployment_pb2.ScalingAction.Value(row.action),
        from_replicas=row.from_replicas,
        to_replicas=row.to_replicas,
        reason=row.reason,
        engine_id=row.engine_id,
        create_time=to_timestamp(row.create_time),
    )
