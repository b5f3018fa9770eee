"""The app's scaler (the reconcile loop's `Scaler` hook): replicas between a deployment's bounds,
autoscaling from load, draining, scale to zero and waking.

Each pass, per model deployment (`replicas.Bounds` fills unset settings with the platform's):

- **Floor**: while serving, at least `floor` replicas — min_replicas, the replicas min_concurrency
  needs (`replica_concurrency` requests each), the tenant's named endpoints, and 1 — capped by
  max_replicas. Missing replicas are placed on registered engines the deployment is not on yet
  (`engines.place_another`), as the control plane's (`placed_by` "scaler").
- **Autoscale** (`scaling.autoscale`): one replica more when a signal stays over its threshold for
  `scale_up_window_seconds` — outstanding requests (the gateways' in flight + queued,
  `LoadBoard`) per ready replica over `scale_up_outstanding`, a replica's engine with more than
  `scale_up_waiting` requests waiting, or KV-cache usage over `scale_up_kv_cache` (GetStats) —
  and only while every replica is ready (one step at a time); one fewer when outstanding per
  replica stays under `scale_down_outstanding` with nothing waiting for the longer
  `scale_down_window_seconds` (hysteresis), also only while every replica is ready (a replica
  still loading is never removed for a quiet spell) and while some gateway reports (no report is
  no signal, not a quiet one). Never above max_replicas, never below the floor.
- **Drain**: a replica removed leaves routing first (`draining_since`, a routing revision); it is
  unloaded (UnloadModel as its owner) once every live gateway has reported since then with
  nothing in flight on it, or after `drain_timeout_seconds`.
- **Scale to zero**: a deployment that may (min_replicas 0, min_concurrency 0), READY, with nothing
  in flight or queued and no request for `idle_timeout_seconds` (the gateways' last request time;
  never from before the deployment was READY) drains every replica and is
  SCALED_TO_ZERO, `cold_start` set; the tenant's replica rows stay, for the wake.
- **Wake** (`wake`, RoutingService.WakeDeployment): SCALED_TO_ZERO → PENDING with the floor's
  replicas, `cold_start` kept until READY (or FAILED); a deployment whose settings no longer
  allow zero (min_replicas raised) is woken by the pass itself.

Every decision is a scaling event with its reason (`events`). Decisions are written in `mutation`
transactions that re-read the deployment (locked) and give up when it changed meanwhile; the
next pass sees the new state. Timers (windows, idleness, drains) are this process's memory: an
app restart starts them afresh (never sooner).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.control import events
from app.control.desired_state import DesiredModel
from app.control.engines import EngineModel, place_another, served_model_name
from app.control.load import LoadBoard
from app.control.replicas import SCALER, TENANT, Bounds, ReplicaPolicy, bounds
from app.control.scaler import EngineLoad
from app.control.status import PENDING, READY, SCALED_TO_ZERO
from app.db import models
from app.db.models import utcnow
from app.db.session import Database, discard
from app.settings import AppSettings
from budrt.errors import not_found

log = logging.getLogger(__name__)


class _Loop(Protocol):
    def kick(self) -> None: ...

    def unload(self, replicas: Sequence[EngineModel]) -> None: ...


@dataclass(frozen=True)
class AutoscaleSettings:
    """Thresholds and windows (from `AppSettings`)."""

    up_outstanding: float = 8.0
    up_waiting: int = 4
    up_kv_cache: float = 0.9
    up_window: float = 30.0
    down_outstanding: float = 2.0
    down_window: float = 300.0
    drain_timeout: float = 60.0

    @classmethod
    def of(cls, settings: AppSettings) -> AutoscaleSettings:
        return cls(
            up_outstanding=settings.scale_up_outstanding,
            up_waiting=settings.scale_up_waiting,
            up_kv_cache=settings.scale_up_kv_cache,
            up_window=settings.scale_up_window_seconds,
            down_outstanding=settings.scale_down_outstanding,
            down_window=settings.scale_down_window_seconds,
            drain_timeout=settings.drain_timeout_seconds,
        )


@dataclass
class _Memory:
    """What this process remembers of one deployment between passes."""

    active_since: float  # monotonic: serving since (the start, a wake): idleness counts from here
    up_since: float | None = None  # scale-up condition held since
    down_since: float | None = None  # scale-down condition held since
    no_room_logged: bool = False


@dataclass(frozen=True)
class Signals:
    """One pass's load signals of a deployment."""

    outstanding: int
    ready: int
    max_waiting: int
    max_kv: float
    last_request: datetime | None
    reports: int = 1  # live gateway reports counted (0: no load signal at all)

    @property
    def per_replica(self) -> float:
        return self.outstanding / max(1, self.ready)


@dataclass
class Autoscaler:
    """The reconcile loop's scaler: see the module docstring."""

    db: Database
    board: LoadBoard
    policy: ReplicaPolicy = field(default_factory=ReplicaPolicy)
    tuning: AutoscaleSettings = field(default_factory=AutoscaleSettings)
    clock: Callable[[], float] = time.monotonic
    needs_stats: bool = True
    _loop: _Loop | None = None
    _memory: dict[str, _Memory] = field(default_factory=dict)
    _drains: dict[tuple[str, str, str], float] = field(default_factory=dict)

    @classmethod
    def of(cls, db: Database, settings: AppSettings) -> Autoscaler:
        return cls(
            db,
            LoadBoard(settings.load_report_ttl_seconds),
            ReplicaPolicy.of(settings),
            AutoscaleSettings.of(settings),
        )

    def attach(self, loop: _Loop) -> None:
        """The reconciler whose passes call this scaler (unloads, kicks)."""
        self._loop = loop

    def wants_stats(self, model: DesiredModel) -> bool:
        """GetStats only of the engines of deployments that autoscale."""
        return model.autoscale and model.desired_replicas > 0

    def bounds(self, model: DesiredModel) -> Bounds:
        return bounds(
            self.policy,
            min_replicas=model.min_replicas,
            max_replicas=model.max_replicas,
            idle_timeout_seconds=model.idle_timeout_seconds,
            min_concurrency=model.min_concurrency,
            tenant_replicas=sum(1 for e in model.endpoints if e.placed_by == TENANT),
        )

    # ---- the pass ---------------------------------------------------------------------------

    async def observe(self, desired: Sequence[DesiredModel], loads: Mapping[str, EngineLoad]) -> None:
        """One decision per deployment at most, then the drains."""
        now = self.clock()
        seen = {d.deployment_id for d in desired}
        for gone in [k for k in self._memory if k not in seen]:
            del self._memory[gone]
        for model in desired:
            memory = self._memory.setdefault(model.deployment_id, _Memory(active_since=now))
            try:
                await self._decide(model, memory, loads, now)
            except Exception:  # one deployment's trouble must not stop the others
                log.exception("scaling %s failed", model.deployment_id)
        await self._drain(desired, now)

    def _signals(self, model: DesiredModel, loads: Mapping[str, EngineLoad]) -> Signals:
        load = self.board.load(model.deployment_id)
        ready = [e for e in model.endpoints if e.ready and not e.draining]
        waiting, kv = 0, 0.0
        for endpoint in ready:
            engine = loads.get(endpoint.address)
            if engine is None or engine.stats is None:
                continue
            for stats in engine.stats.models:
                if stats.name == endpoint.served_model_name:
                    waiting = max(waiting, stats.waiting_requests)
                    kv = max(kv, stats.kv_cache_usage)
        return Signals(load.outstanding, len(ready), waiting, kv, load.last_request, load.reports)

    async def _decide(
        self, model: DesiredModel, memory: _Memory, loads: Mapping[str, EngineLoad], now: float
    ) -> None:
        b = self.bounds(model)
        if model.desired_replicas == 0:
            if not b.may_scale_to_zero:  # settings changed: capacity must be warm again
                reason = (
                    f"min_concurrency {b.min_concurrency} keeps capacity warm"
                    if b.min_concurrency
                    else f"min_replicas {b.min_replicas}"
                )
                if await self._wake(model.deployment_id, reason):
                    memory.active_since = now
            return
        signals = self._signals(model, loads)
        if signals.outstanding > 0 or model.status != READY:
            # Idleness counts from the last request, and never from before the deployment was
            # ready (a cold start longer than the idle timeout must not end in an unload).
            memory.active_since = now
        if b.may_scale_to_zero and model.status == READY and signals.outstanding == 0:
            idle_for = self._idle_for(memory, signals, now)
            if idle_for >= b.idle_timeout_seconds:
                reason = f"no request for {idle_for:.0f} s (idle timeout {b.idle_timeout_seconds} s)"
                await self._scale_to_zero(model, reason)
                return
        target, reason = self._target(model, b, signals, memory, now)
        serving = [e for e in model.endpoints if not e.draining]
        if target != model.desired_replicas or len(serving) != target:
            await self._resize(model, target, reason, memory)

    def _idle_for(self, memory: _Memory, signals: Signals, now: float) -> float:
        """Seconds since the last sign of use: the last request the gateways report, or since
        this process saw the deployment serving (start, wake, a request in flight)."""
        idle = now - memory.active_since
        if signals.last_request is not None:
            idle = min(idle, (utcnow() - signals.last_request).total_seconds())
        return max(0.0, idle)

    def _target(
        self, model: DesiredModel, b: Bounds, signals: Signals, memory: _Memory, now: float
    ) -> tuple[int, str]:
        """The replicas wanted now, and why (for the event)."""
        current = model.desired_replicas
        floor, ceiling = b.floor, b.max_replicas
        if current < floor:
            return floor, self._floor_reason(b)
        if current > ceiling:
            return ceiling, f"max_replicas {ceiling}"
        if not model.autoscale:
            memory.up_since = memory.down_since = None
            if current > floor:
                return floor, f"autoscale off: back to the floor of {floor}"
            return current, ""
        t = self.tuning
        up = self._up_reason(signals)
        # One step at a time, both ways: no decision while a replica is still loading. A
        # scale-down then would remove the replica the last scale-up added before it ever served
        # (a real engine loads for a minute or more, longer than the window), and the load it
        # was added for, still there, would add it again: the deployment would never settle.
        serving = [e for e in model.endpoints if not e.draining]
        settled = all(e.ready for e in serving) and len(serving) == current
        if up:
            memory.down_since = None
            memory.up_since = memory.up_since if memory.up_since is not None else now
            if now - memory.up_since >= t.up_window and current < ceiling and settled:
                memory.up_since = None
                return current + 1, f"{up} for {t.up_window:g} s"
            return current, ""
        memory.up_since = None
        # Quiet is a signal, not its absence: with no live gateway report (gateways too busy to
        # report within the TTL, or gone) the load is unknown, and a replica stays.
        quiet = signals.reports > 0 and signals.per_replica < t.down_outstanding and signals.max_waiting == 0
        if not quiet or current <= floor or not settled:
            memory.down_since = None
            return current, ""
        memory.down_since = memory.down_since if memory.down_since is not None else now
        if now - memory.down_since >= t.down_window:
            memory.down_since = None
            return current - 1, (
                f"outstanding requests per ready replica {signals.per_replica:.1f} < "
                f"{t.down_outstanding:g} for {t.down_window:g} s"
            )
        return current, ""

    def _up_reason(self, signals: Signals) -> str:
        t = self.tuning
        if signals.ready and signals.per_replica > t.up_outstanding:
            return f"outstanding requests per ready replica {signals.per_replica:.1f} > {t.up_outstanding:g}"
        if signals.max_waiting > t.up_waiting:
            return f"engine waiting requests {signals.max_waiting} > {t.up_waiting}"
        if signals.max_kv > t.up_kv_cache:
            return f"KV-cache usage {signals.max_kv:.2f} > {t.up_kv_cache:g}"
        return ""

    @staticmethod
    def _floor_reason(b: Bounds) -> str:
        if b.concurrency_replicas >= max(b.min_replicas, b.tenant_replicas, 1) and b.min_concurrency:
            return f"min_concurrency {b.min_concurrency} needs {b.concurrency_replicas} replicas"
        if b.min_replicas >= b.tenant_replicas and b.min_replicas > 1:
            return f"min_replicas {b.min_replicas}"
        return f"floor of {b.floor} replicas"

    # ---- decisions (each one transaction) ---------------------------------------------------

    async def _locked(self, session: AsyncSession, model: DesiredModel) -> models.Deployment | None:
        """The deployment's row, locked, if it is still the version the pass read."""
        row = await session.scalar(
            select(models.Deployment)
            .where(models.Deployment.id == model.deployment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if (
            row is None
            or row.spec_version != model.spec_version
            or row.desired_replicas != model.desired_replicas
        ):
            return None
        return row

    async def _resize(self, model: DesiredModel, target: int, reason: str, memory: _Memory) -> None:
        """Writes the new replica count; places the replicas missing, drains those over it
        (the control plane's, newest first)."""
        added: list[str] = []
        async with self.db.mutation() as session:
            row = await self._locked(session, model)
            if row is None:
                discard(session)
                return
            endpoint = models.DeploymentEndpoint
            rows = list(
                await session.scalars(
                    select(endpoint).where(endpoint.deployment_id == row.id).order_by(endpoint.position)
                )
            )
            serving = [r for r in rows if r.draining_since is None]
            count = len(serving)
            before = row.desired_replicas
            row.desired_replicas = target
            position = max((r.position for r in rows), default=-1) + 1
            while count < target:
                engine = await place_another(session, row.id)
                if engine is None:
                    if not memory.no_room_logged:
                        log.warning(
                            "no registered engine has room for another replica",
                            extra={"deployment": row.id, "replicas": count, "wanted": target},
                        )
                        memory.no_room_logged = True
                    break
                memory.no_room_logged = False
                session.add(
                    models.DeploymentEndpoint(
                        deployment_id=row.id,
                        position=position,
                        engine_id=engine.id,
                        address=engine.address,
                        served_model_name=served_model_name(row.id, row.generation),
                        placed_by=SCALER,
                        ready=False,
                    )
                )
                await session.flush()
                position += 1
                events.record(session, row.id, events.SCALE_UP, count, count + 1, reason, engine.id)
                added.append(engine.id)
                count += 1
            extra = [r for r in serving if r.placed_by == SCALER]
            now = utcnow()
            while count > target and extra:
                victim = extra.pop()
                victim.draining_since = now
                self._drains[(row.id, victim.address, victim.served_model_name)] = self.board.monotonic()
                events.record(session, row.id, events.SCALE_DOWN, count, count - 1, reason, victim.engine_id)
                count -= 1
            if not added and before == target and count == len(serving):
                discard(session)  # nothing changed (no room): no revision
                return
        if added and self._loop is not None:
            self._loop.kick()

    async def _scale_to_zero(self, model: DesiredModel, reason: str) -> None:
        """SCALED_TO_ZERO: every replica drained (out of routing at once), then unloaded."""
        async with self.db.mutation() as session:
            row = await self._locked(session, model)
            if row is None or row.status != READY:
                discard(session)
                return
            serving = [e for e in row.endpoints if e.draining_since is None]
            now = utcnow()
            await session.execute(
                update(models.DeploymentEndpoint)
                .where(
                    models.DeploymentEndpoint.deployment_id == row.id,
                    models.DeploymentEndpoint.draining_since.is_(None),
                )
                .values(draining_since=now, ready=False)
            )
            for e in serving:
                self._drains[(row.id, e.address, e.served_model_name)] = self.board.monotonic()
            events.record(session, row.id, events.SCALE_TO_ZERO, row.desired_replicas, 0, reason)
            row.desired_replicas = 0
            row.cold_start = True
            row.status, row.status_message = SCALED_TO_ZERO, reason
            row.spec_version += 1  # a reconcile task in flight must not write over it

    async def _wake(self, deployment_id: str, reason: str) -> bool:
        woke = False
        async with self.db.mutation() as session:
            row = await session.scalar(
                select(models.Deployment)
                .where(models.Deployment.id == deployment_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if row is None or row.desired_replicas != 0 or row.model_source_kind is None:
                discard(session)
                return False
            tenant = [e for e in row.endpoints if e.placed_by == TENANT]
            b = bounds(
                self.policy,
                min_replicas=row.min_replicas,
                max_replicas=row.max_replicas,
                idle_timeout_seconds=row.idle_timeout_seconds,
                min_concurrency=row.min_concurrency,
                tenant_replicas=len(tenant),
            )
            # The tenant's replicas serve again (one still draining is kept loaded: the
            # reconciler finds it READY on its engine); the control plane's others are placed by
            # the next pass when the floor wants more.
            await session.execute(
                update(models.DeploymentEndpoint)
                .where(
                    models.DeploymentEndpoint.deployment_id == row.id,
                    models.DeploymentEndpoint.placed_by == TENANT,
                )
                .values(draining_since=None, ready=False)
            )
            for e in tenant:
                self._drains.pop((row.id, e.address, e.served_model_name), None)
            row.desired_replicas = b.floor  # the next pass places any beyond the tenant's
            row.cold_start = True
            row.status, row.status_message = PENDING, ""
            row.spec_version += 1
            events.record(session, row.id, events.WAKE, 0, b.floor, reason)
            woke = True
        memory = self._memory.get(deployment_id)
        if memory is not None:
            memory.active_since = self.clock()
        if self._loop is not None:
            self._loop.kick()
        return woke

    async def wake(self, deployment_id: str, gateway_id: str) -> bool:
        """RoutingService.WakeDeployment: loads a deployment scaled to zero; False when it was
        not (already waking, loading or ready). NOT_FOUND for an unknown deployment."""
        async with self.db.snapshot() as session:
            if await session.get(models.Deployment, deployment_id) is None:
                raise not_found(f"deployment {deployment_id!r} not found", param="deployment_id")
        who = f"gateway {gateway_id}" if gateway_id else "a gateway"
        return await self._wake(deployment_id, f"a request arrived ({who})")

    # ---- drains -----------------------------------------------------------------------------

    async def _drain(self, desired: Sequence[DesiredModel], now: float) -> None:
        """Unloads the drained replicas: scaled-down ones go, the tenant's of a deployment
        scaled to zero stay as rows (not draining, not ready) for the wake."""
        done: list[tuple[DesiredModel, EngineModel]] = []
        live: set[tuple[str, str, str]] = set()
        for model in desired:
            for endpoint in model.endpoints:
                if not endpoint.draining:
                    continue
                key = (model.deployment_id, endpoint.address, endpoint.served_model_name)
                live.add(key)
                since = self._drains.setdefault(key, self.board.monotonic())
                timed_out = self.board.monotonic() - since >= self.tuning.drain_timeout
                if timed_out or self.board.drained(endpoint.address, endpoint.served_model_name, since):
                    done.append((model, endpoint))
        for key in [k for k in self._drains if k not in live]:
            del self._drains[key]
        if not done:
            return
        unloaded: list[EngineModel] = []
        async with self.db.mutation() as session:
            endpoint_table = models.DeploymentEndpoint
            for model, endpoint in done:
                where = (
                    endpoint_table.deployment_id == model.deployment_id,
                    endpoint_table.address == endpoint.address,
                    endpoint_table.served_model_name == endpoint.served_model_name,
                    endpoint_table.draining_since.is_not(None),
                )
                if endpoint.placed_by == SCALER:
                    result = await session.execute(delete(endpoint_table).where(*where))
                else:
                    result = await session.execute(
                        update(endpoint_table).where(*where).values(draining_since=None)
                    )
                # Only a replica still draining now: a wake may have taken it back meanwhile.
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    unloaded.append(endpoint)
            if not unloaded:
                discard(session)
        for model, endpoint in done:
            self._drains.pop((model.deployment_id, endpoint.address, endpoint.served_model_name), None)
        if unloaded and self._loop is not None:
            self._loop.unload(unloaded)

    def describe(self) -> dict[str, Any]:
        """What this scaler remembers (for logs and tests)."""
        return {"deployments": len(self._memory), "draining": len(self._drains)}
