"""Engines whose lease ended: their replicas are lost, and go elsewhere.

An engine that announces itself (`AnnounceEngine`) holds a lease; one that stops announcing (its
pod was removed, its node died, the network parted) is taken out of placement
(`engines.lease_active`) and, at the start of every reconcile pass, its replicas are treated as
lost:

- a replica the control plane added (`placed_by` scaler) is removed: the scaler's floor places
  another on a live engine at once if the deployment still wants it;
- a tenant's replica moves to a live engine with room that the deployment is not on yet
  (`engines.place_another`), not ready, so the reconciler loads it there (the deployment goes
  PENDING with the reason, then LOADING, then READY: it is not routed as ready meanwhile); with no such engine it stays where it is, unreachable, until an engine
  is back or has room (the next pass tries again).

Each move is one `mutation` transaction (the gateways' routing follows) that bumps the
deployment's `spec_version`, so a reconcile task in flight for the old engine cannot write its
status over the move. Engines registered by an admin hold no lease and are never touched here.
A model the lost engine may still hold (a partition rather than a restart) is not unloaded: the
engine cannot be reached; an engine that comes back with models it no longer owns for any
replica keeps them until it restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from app.control.engines import place_another
from app.control.replicas import SCALER
from app.control.status import PENDING, SCALED_TO_ZERO
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    """What became of one replica of an engine whose lease ended."""

    deployment_id: str
    from_engine: str
    to_engine: str  # empty: removed (scaler's) or left in place (no room elsewhere)
    removed: bool = False


async def expired_engines(db: Database, now: datetime) -> list[str]:
    """The ids of the engines whose lease has ended that still hold replicas."""
    engine, endpoint = models.Engine, models.DeploymentEndpoint
    async with db.snapshot() as session:
        rows = await session.scalars(
            select(engine.id)
            .where(engine.lease_expire_time.is_not(None), engine.lease_expire_time <= now)
            .where(engine.id.in_(select(endpoint.engine_id)))
            .order_by(engine.id)
        )
        return list(rows)


async def _move_deployment(db: Database, deployment_id: str, lost: set[str]) -> list[Moved]:
    """Moves one deployment's replicas off the engines in `lost` (one transaction)."""
    moved: list[Moved] = []
    async with db.mutation() as session:
        row = await session.scalar(
            select(models.Deployment)
            .where(models.Deployment.id == deployment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is None:
            discard(session)
            return []
        endpoint = models.DeploymentEndpoint
        replicas = list(
            await session.scalars(
                select(endpoint)
                .where(endpoint.deployment_id == deployment_id, endpoint.engine_id.in_(lost))
                .order_by(endpoint.position)
            )
        )
        for replica in replicas:
            if replica.placed_by == SCALER:
                await session.execute(
                    delete(endpoint).where(
                        endpoint.deployment_id == deployment_id, endpoint.position == replica.position
                    )
                )
                await session.flush()
                moved.append(Moved(deployment_id, replica.engine_id, "", removed=True))
                continue
            target = await place_another(session, deployment_id)
            if target is None:
                moved.append(Moved(deployment_id, replica.engine_id, ""))
                continue
            moved.append(Moved(deployment_id, replica.engine_id, target.id))
            if row.status != SCALED_TO_ZERO:
                # Not serving until loaded there (the reconciler goes on with LOADING, READY).
                row.status = PENDING
                row.status_message = f"engine {replica.engine_id} stopped; moving to engine {target.id}"
            replica.engine_id, replica.address, replica.ready = target.id, target.address, False
            await session.flush()
        if not any(m.removed or m.to_engine for m in moved):
            discard(session)  # nowhere to go: nothing written, no routing revision
            return moved
        row.spec_version += 1  # a reconcile task in flight must not write over the move
    return moved


class LeaseKeeper:
    """Runs before each reconcile pass: moves the replicas of engines whose lease ended (see the
    module docstring). Logs each engine once per loss, not every pass."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reported: set[str] = set()

    async def sweep(self, now: datetime | None = None) -> list[Moved]:
        """One sweep; returns what it did (for logs and tests)."""
        now = now or utcnow()
        lost = set(await expired_engines(self._db, now))
        for engine_id in sorted(lost - self._reported):
            log.warning("engine lease ended: moving its replicas", extra={"engine": engine_id})
        self._reported = lost
        if not lost:
            return []
        endpoint = models.DeploymentEndpoint
        async with self._db.snapshot() as session:
            deployments = sorted(
                set(
                    (
                        await session.scalars(
                            select(endpoint.deployment_id).where(endpoint.engine_id.in_(lost))
                        )
                    ).all()
                )
            )
        done: list[Moved] = []
        for deployment_id in deployments:
            try:
                done.extend(await _move_deployment(self._db, deployment_id, lost))
            except Exception:  # one deployment's trouble must not stop the others
                log.exception("moving the replicas of %s failed", deployment_id)
        _log_moves([m for m in done if m.removed or m.to_engine])
        return done


def _log_moves(moves: Sequence[Moved]) -> None:
    for m in moves:
        log.info(
            "replica of a lost engine " + ("removed" if m.removed else "moved"),
            extra={"deployment": m.deployment_id, "from_engine": m.from_engine, "to_engine": m.to_engine},
        )
