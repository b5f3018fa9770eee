"""The engine reconciler: makes the engines serve what the model deployments ask for.

A background task of the app process. Each pass reads every model deployment and, per engine
endpoint, asks the engine at `address` what it serves (ListModels, once per engine per pass). A
model missing under the endpoint's `served_model_name` is loaded (LoadModel with the deployment's
source, runner and engine args); one loaded for an older version of the deployment is unloaded
and loaded again. The deployment's status follows: PENDING → LOADING → READY, or FAILED with the
engine's reason. An unreachable engine is not a failure: the deployment goes (back) to PENDING
with a message saying so, and the engine is retried with exponential backoff — which is also how
an engine restart is healed.

Passes run at start, when a servicer calls :meth:`Reconciler.kick` (create/update), and every
`interval` seconds. Loads run in tasks of their own, one per deployment at a time, so a long load
never delays anything else; RPCs never wait for them.

What this process loaded is remembered in memory (per endpoint, a fingerprint of source, runner
and args). After an app restart a model the engine already serves READY under the endpoint's
name is adopted as is (the app cannot change a deployment while it is down). A load that failed
is retried only after a long backoff (or at once when the deployment is updated), not every pass.
Models of deleted deployments are unloaded best effort; one left behind when the app stopped in
between is not cleaned up (engines may serve models the app does not manage).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import grpc
from bud.app.v1 import deployment_pb2
from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from sqlalchemy import select, update

from app.convert import engine_args_from_json, runner_value, status_name
from app.db import models
from app.db.session import Database, discard
from budrt.grpc_server import insecure_channel

log = logging.getLogger(__name__)

PENDING = status_name(deployment_pb2.DEPLOYMENT_STATUS_PENDING)
LOADING = status_name(deployment_pb2.DEPLOYMENT_STATUS_LOADING)
READY = status_name(deployment_pb2.DEPLOYMENT_STATUS_READY)
FAILED = status_name(deployment_pb2.DEPLOYMENT_STATUS_FAILED)

OutcomeState = Literal["ready", "loading", "failed", "unreachable"]


def load_source(kind: str, value: str) -> str:
    """The LoadModel `source` of a deployment's model source."""
    return f"builtin:{value}" if kind == "builtin" else value


def load_args(row: models.Deployment) -> engine_service_pb2.EngineArgs:
    """The engine args to load with. `caching` turns prefix caching on unless the engine args say
    otherwise; caching off leaves the engine's default alone."""
    args = engine_args_from_json(row.engine_args)
    if row.caching and not args.HasField("enable_prefix_caching"):
        args.enable_prefix_caching = True
    return args


@dataclass(frozen=True)
class Endpoint:
    """One engine endpoint of a deployment."""

    address: str
    served_model_name: str


@dataclass(frozen=True)
class DesiredModel:
    """What one model deployment asks the engines for, as read at the start of a pass."""

    deployment_id: str
    spec_version: int
    status: str
    status_message: str
    source: str
    runner: int
    args: engine_service_pb2.EngineArgs
    endpoints: tuple[Endpoint, ...]

    @property
    def fingerprint(self) -> str:
        """Identifies what gets loaded: changes with source, runner or args."""
        digest = hashlib.sha256()
        digest.update(self.source.encode())
        digest.update(b"\0" + str(self.runner).encode() + b"\0")
        digest.update(self.args.SerializeToString(deterministic=True))
        return digest.hexdigest()

    @classmethod
    def of(cls, row: models.Deployment) -> DesiredModel:
        """From a deployment row (its endpoints loaded)."""
        return cls(
            deployment_id=row.id,
            spec_version=row.spec_version,
            status=row.status,
            status_message=row.status_message,
            source=load_source(row.model_source_kind or "", row.model_source or ""),
            runner=runner_value(row.runner),
            args=load_args(row),
            endpoints=tuple(Endpoint(e.address, e.served_model_name) for e in row.endpoints),
        )


@dataclass(frozen=True)
class Outcome:
    """Where one endpoint stands after a pass."""

    state: OutcomeState
    message: str = ""


@dataclass
class _Backoff:
    """Exponential retry schedule of one failing thing."""

    delay: float
    next_try: float
    message: str
    fingerprint: str = ""

    def due(self, now: float) -> bool:
        return now >= self.next_try


@dataclass(frozen=True)
class _Unreachable:
    message: str


Listing = dict[str, engine_service_pb2.ServedModel] | _Unreachable


def aggregate(endpoints: Sequence[Endpoint], outcomes: Sequence[Outcome]) -> tuple[str, str]:
    """The deployment status of its endpoints' outcomes: FAILED if one failed, READY if all are
    ready, LOADING if one is loading, else PENDING (engines unreachable)."""
    pairs = list(zip(endpoints, outcomes, strict=True))
    notes = [f"{e.address}: {o.message}" for e, o in pairs if o.state != "ready"]
    states = {o.state for o in outcomes}
    if "failed" in states:
        return FAILED, "; ".join(f"{e.address}: {o.message}" for e, o in pairs if o.state == "failed")
    if states == {"ready"}:
        return READY, ""
    if "loading" in states:
        return LOADING, "; ".join(notes)
    return PENDING, "; ".join(notes)


@dataclass
class _Memory:
    """What this process knows of the engines beyond what they report."""

    loaded: dict[tuple[str, str], str] = field(default_factory=dict)  # endpoint -> fingerprint
    failed_loads: dict[tuple[str, str], _Backoff] = field(default_factory=dict)
    unreachable: dict[str, _Backoff] = field(default_factory=dict)  # address -> backoff


class Reconciler:
    """Keeps engines serving the model deployments; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float = 5.0,
        min_backoff: float = 0.5,
        max_backoff: float = 5.0,
        failed_load_backoff: float = 300.0,
        list_timeout: float = 10.0,
        load_timeout: float = 3600.0,
        unload_timeout: float = 60.0,
        channel_factory: Callable[[str], grpc.aio.Channel] = insecure_channel,
    ) -> None:
        self._db = db
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.failed_load_backoff = failed_load_backoff
        self.list_timeout = list_timeout
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout
        self._channel_factory = channel_factory
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._memory = _Memory()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()
        self._closed = False

    # ---- triggers -------------------------------------------------------------------------

    def kick(self) -> None:
        """Asks for a pass now (a deployment was created or changed)."""
        self._kick.set()

    def unload(self, endpoints: Iterable[tuple[str, str]]) -> None:
        """Unloads (address, served_model_name) models in the background, best effort."""
        if self._closed:  # shutting down: nothing would await the calls
            return
        for address, name in endpoints:
            self._memory.loaded.pop((address, name), None)
            self._memory.failed_loads.pop((address, name), None)
            self._spawn(self._unload(address, name))

    # ---- loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Runs passes until `stop` is set, then cancels loads in flight and closes channels."""
        try:
            while not stop.is_set():
                self._kick.clear()
                try:
                    await self.reconcile_once()
                except Exception:  # a database hiccup must not end the loop
                    log.exception("reconcile pass failed")
                await _wait_any((self._kick, stop), self._next_wait())
        finally:
            await self.close()

    async def reconcile_once(self, wait: bool = False) -> None:
        """One pass: starts a task for every deployment without one; `wait` awaits them."""
        async with self._db.snapshot() as session:
            rows = (
                await session.scalars(
                    select(models.Deployment).where(models.Deployment.model_source_kind.is_not(None))
                )
            ).all()
            desired = [DesiredModel.of(row) for row in rows]
        self._forget_unused(desired)
        idle = [d for d in desired if d.deployment_id not in self._tasks]
        addresses = sorted({e.address for d in idle for e in d.endpoints})
        replies = await asyncio.gather(*(self._list(a) for a in addresses))
        listings = dict(zip(addresses, replies, strict=True))
        started = []
        for model in idle:
            task = asyncio.create_task(
                self._reconcile(model, listings), name=f"reconcile {model.deployment_id}"
            )
            self._tasks[model.deployment_id] = task
            task.add_done_callback(lambda t, key=model.deployment_id: self._task_done(key, t))
            started.append(task)
        if wait:
            await asyncio.gather(*started, return_exceptions=True)

    async def close(self) -> None:
        """Cancels everything in flight and closes the engine channels."""
        self._closed = True
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    def _task_done(self, deployment_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(deployment_id) is task:
            del self._tasks[deployment_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("reconciling %s failed", deployment_id, exc_info=task.exception())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _forget_unused(self, desired: Sequence[DesiredModel]) -> None:
        """Drops retry state of engines and endpoints no deployment uses any more."""
        endpoints = {(e.address, e.served_model_name) for d in desired for e in d.endpoints}
        addresses = {address for address, _ in endpoints}
        memory = self._memory
        for address in [a for a in memory.unreachable if a not in addresses]:
            del memory.unreachable[address]
        for key in [k for k in memory.failed_loads if k not in endpoints]:
            del memory.failed_loads[key]

    def _next_wait(self) -> float:
        """Until the next pass: the interval, or sooner when a retry falls due."""
        now = time.monotonic()
        retries = [*self._memory.unreachable.values(), *self._memory.failed_loads.values()]
        waits = [self.interval, *(b.next_try - now for b in retries if b.next_try > now)]
        return max(0.05, min(waits))

    # ---- engines --------------------------------------------------------------------------

    def _stub(self, address: str) -> engine_service_pb2_grpc.EngineServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._channel_factory(address)
        return engine_service_pb2_grpc.EngineServiceStub(channel)

    def _engine_down(self, address: str, err: grpc.aio.AioRpcError) -> _Unreachable:
        """Records a failed contact; the next try waits twice as long as the last (capped)."""
        message = f"{err.code().name}: {err.details()}"
        previous = self._memory.unreachable.get(address)
        delay = self.min_backoff if previous is None else min(previous.delay * 2, self.max_backoff)
        self._memory.unreachable[address] = _Backoff(delay, time.monotonic() + delay, message)
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            # The connection is down (calls in flight on it fail too). A fresh channel connects
            # at once when the engine is back, whereas this one would first wait out gRPC's own
            # reconnect backoff (up to two minutes). A slow engine (DEADLINE_EXCEEDED) keeps its
            # channel: a long LoadModel may be running on it.
            channel = self._channels.pop(address, None)
            if channel is not None:
                self._spawn(channel.close())
        if previous is None:
            log.warning("engine unreachable", extra={"address": address, "error": message})
        return _Unreachable(message)

    async def _list(self, address: str) -> Listing:
        backoff = self._memory.unreachable.get(address)
        if backoff is not None and not backoff.due(time.monotonic()):
            return _Unreachable(backoff.message)
        try:
            reply = await self._stub(address).ListModels(
                engine_service_pb2.ListModelsRequest(), timeout=self.list_timeout
            )
        except grpc.aio.AioRpcError as err:
            return self._engine_down(address, err)
        if self._memory.unreachable.pop(address, None) is not None:
            log.info("engine reachable again", extra={"address": address})
        return {m.name: m for m in reply.models}

    async def _unload(self, address: str, name: str) -> None:
        try:
            await self._stub(address).UnloadModel(
                engine_service_pb2.UnloadModelRequest(name=name), timeout=self.unload_timeout
            )
            log.info("model unloaded", extra={"address": address, "model": name})
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                log.warning(
                    "unloading a model failed",
                    extra={"address": address, "model": name, "error": f"{err.code().name}: {err.details()}"},
                )

    # ---- one deployment -------------------------------------------------------------------

    async def _reconcile(self, model: DesiredModel, listings: dict[str, Listing]) -> None:
        written = [model.status, model.status_message]
        stale = False

        async def set_status(status: str, message: str) -> None:
            nonlocal stale
            if stale or written == [status, message]:
                return
            if await self._write_status(model, status, message):
                written[:] = [status, message]
            else:
                stale = True

        async def mark_loading(address: str) -> None:
            if written[0] != LOADING:
                await set_status(LOADING, f"{address}: loading")

        outcomes = await asyncio.gather(
            *(self._ensure(model, e, listings[e.address], mark_loading) for e in model.endpoints)
        )
        await set_status(*aggregate(model.endpoints, outcomes))
        if stale:
            await self._after_stale_write(model)

    async def _ensure(
        self,
        model: DesiredModel,
        endpoint: Endpoint,
        listing: Listing,
        mark_loading: Callable[[str], Awaitable[None]],
    ) -> Outcome:
        """Makes one engine serve the model; returns where that endpoint stands."""
        if isinstance(listing, _Unreachable):
            return Outcome("unreachable", f"engine unreachable ({listing.message}); retrying")
        key = (endpoint.address, endpoint.served_model_name)
        fingerprint = model.fingerprint
        memory = self._memory
        served = listing.get(endpoint.served_model_name)
        current = served is not None and self._is_current(key, served, model)
        if served is not None and current:
            if served.state == engine_service_pb2.MODEL_STATE_READY:
                memory.loaded[key] = fingerprint
                memory.failed_loads.pop(key, None)
                return Outcome("ready")
            if served.state == engine_service_pb2.MODEL_STATE_LOADING:
                return Outcome("loading", "loading")
            if served.state == engine_service_pb2.MODEL_STATE_UNLOADING:
                return Outcome("loading", "waiting for the engine to unload an older copy")
        failure = memory.failed_loads.get(key)
        if failure is not None and failure.fingerprint == fingerprint and not failure.due(time.monotonic()):
            return Outcome("failed", failure.message)

        await mark_loading(endpoint.address)
        stub = self._stub(endpoint.address)
        if served is not None:  # an older version, or a failed attempt: replace it
            memory.loaded.pop(key, None)
            await self._unload(endpoint.address, endpoint.served_model_name)
        request = engine_service_pb2.LoadModelRequest(
            name=endpoint.served_model_name, source=model.source, runner=model.runner, args=model.args
        )
        log.info(
            "loading model",
            extra={"deployment": model.deployment_id, "address": endpoint.address,
                   "model": endpoint.served_model_name, "source": model.source},
        )
        try:
            reply = await stub.LoadModel(request, timeout=self.load_timeout)
        except grpc.aio.AioRpcError as err:
            # CANCELLED: the channel was closed under the call because the engine went away.
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                down = self._engine_down(endpoint.address, err)
                return Outcome("unreachable", f"engine unreachable ({down.message}); retrying")
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                message = f"load did not finish within {self.load_timeout:g}s"
                return self._load_failed(key, fingerprint, message)
            return self._load_failed(key, fingerprint, f"{err.code().name}: {err.details()}")
        loaded = reply.model
        if loaded.state == engine_service_pb2.MODEL_STATE_READY:
            memory.loaded[key] = fingerprint
            memory.failed_loads.pop(key, None)
            log.info("model ready", extra={"deployment": model.deployment_id, "address": endpoint.address})
            return Outcome("ready")
        if loaded.state == engine_service_pb2.MODEL_STATE_FAILED:
            return self._load_failed(key, fingerprint, loaded.error or "the engine reported a failed load")
        return Outcome("loading", engine_service_pb2.ModelState.Name(loaded.state).lower())

    def _is_current(
        self, key: tuple[str, str], served: engine_service_pb2.ServedModel, model: DesiredModel
    ) -> bool:
        """Whether the served model is this version of the deployment."""
        known = self._memory.loaded.get(key)
        if known is not None:
            return known == model.fingerprint
        # Not loaded by this process (it restarted): adopt a compatible model. Engines may report
        # a resolved source (a builtin's directory), so the source is not compared.
        if model.runner and served.runner and served.runner != model.runner:
            return False
        for descriptor, value in model.args.ListFields():
            if served.args.HasField(descriptor.name) and getattr(served.args, descriptor.name) != value:
                return False
        return served.state != engine_service_pb2.MODEL_STATE_FAILED

    def _load_failed(self, key: tuple[str, str], fingerprint: str, message: str) -> Outcome:
        previous = self._memory.failed_loads.get(key)
        delay = self.failed_load_backoff
        if previous is not None and previous.fingerprint == fingerprint:
            delay = min(previous.delay * 2, self.failed_load_backoff * 8)
        self._memory.failed_loads[key] = _Backoff(delay, time.monotonic() + delay, message, fingerprint)
        log.warning("model load failed", extra={"address": key[0], "model": key[1], "error": message})
        return Outcome("failed", message)

    async def _write_status(self, model: DesiredModel, status: str, message: str) -> bool:
        """Writes the status for the spec version acted on; False if the deployment has since
        changed or gone."""
        async with self._db.mutation() as session:
            result = await session.execute(
                update(models.Deployment)
                .where(
                    models.Deployment.id == model.deployment_id,
                    models.Deployment.spec_version == model.spec_version,
                )
                .values(status=status, status_message=message)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                discard(session)
                return False
        log.info("deployment status", extra={"deployment": model.deployment_id, "status": status,
                                              "status_message": message})
        return True

    async def _after_stale_write(self, model: DesiredModel) -> None:
        async with self._db.snapshot() as session:
            exists = await session.get(models.Deployment, model.deployment_id)
        if exists is None:
            # Deleted while loading: its unload may have run before the load finished.
            self.unload((e.address, e.served_model_name) for e in model.endpoints)
        else:
            self.kick()  # changed meanwhile: act on the new version


async def _wait_any(events: Sequence[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
