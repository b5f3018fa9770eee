"""The reconcile loop: passes over the desired models, one task per deployment, and the two retry
schedules (engines that cannot be reached, loads that failed). See `app.control` for the whole
story."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from app.control.desired_state import DesiredModel, read_desired
from app.control.engine_client import EngineClient
from app.control.engines import EngineModel
from app.control.leases import LeaseKeeper
from app.control.scaler import EngineLoad, Scaler, StaticScaler
from app.control.status import (
    ENGINE_UNAVAILABLE,
    LOADING,
    Outcome,
    aggregate,
    deployment_exists,
    write_status,
)
from app.convert import TENANT
from app.db.session import Database
from bud.engine.v1 import engine_service_pb2
from budrt.grpc_server import service_channel

log = logging.getLogger(__name__)


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


@dataclass
class _Memory:
    """What this process knows of the engines beyond what they report."""

    failed_loads: dict[tuple[str, str], _Backoff] = field(default_factory=dict)
    unreachable: dict[str, _Backoff] = field(default_factory=dict)  # address -> backoff


class Reconciler:
    """Keeps engines serving the model deployments; see the `app.control` docstring."""

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
        channel_factory: Callable[[str], grpc.aio.Channel] = service_channel,
        scaler: Scaler | None = None,
    ) -> None:
        self._db = db
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.failed_load_backoff = failed_load_backoff
        self.engines = EngineClient(
            list_timeout=list_timeout,
            load_timeout=load_timeout,
            unload_timeout=unload_timeout,
            stats_timeout=list_timeout,
            channel_factory=channel_factory,
        )
        self.scaler: Scaler = scaler if scaler is not None else StaticScaler()
        attach = getattr(self.scaler, "attach", None)
        if attach is not None:  # a scaler that unloads replicas and asks for passes
            attach(self)
        self.leases = LeaseKeeper(db)
        self._memory = _Memory()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()
        self._closed = False

    # ---- triggers -------------------------------------------------------------------------

    def kick(self) -> None:
        """Asks for a pass now (a deployment was created or changed)."""
        self._kick.set()

    def unload(self, replicas: Iterable[EngineModel]) -> None:
        """Unloads replicas' models in the background, best effort, each as its owner (the
        deployment and generation it was loaded for: the engine refuses anyone else)."""
        if self._closed:  # shutting down: nothing would await the calls
            return
        for replica in replicas:
            self._memory.failed_loads.pop((replica.address, replica.served_model_name), None)
            self._spawn(self.engines.unload(replica.address, replica.served_model_name, replica.owner))

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
        """One pass: moves the replicas of engines whose lease ended (`leases`), starts a task
        for every deployment without one, then calls the scaler; `wait` awaits the tasks."""
        try:
            await self.leases.sweep()
        except Exception:  # a database hiccup must not stop the pass
            log.exception("engine lease sweep failed")
        desired = await read_desired(self._db)
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
        await self._scale(desired)
        if wait:
            await asyncio.gather(*started, return_exceptions=True)

    async def close(self) -> None:
        """Cancels everything in flight and closes the engine channels."""
        self._closed = True
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engines.close()

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

    # ---- scaler ---------------------------------------------------------------------------

    async def _scale(self, desired: Sequence[DesiredModel]) -> None:
        """Hands the pass to the scaler, with the engines' stats when it asks for them."""
        loads: Mapping[str, EngineLoad] = {}
        if self.scaler.needs_stats:
            # A scaler may narrow the engines it wants stats of (the autoscaler: those of
            # deployments with autoscale on).
            wants = getattr(self.scaler, "wants_stats", None)
            addresses = sorted({e.address for d in desired if wants is None or wants(d) for e in d.endpoints})
            replies = await asyncio.gather(*(self._stats(a) for a in addresses))
            loads = {load.address: load for load in replies}
        try:
            await self.scaler.observe(desired, loads)
        except Exception:  # a scaler's bug must not end the pass
            log.exception("scaler failed")

    async def _stats(self, address: str) -> EngineLoad:
        backoff = self._memory.unreachable.get(address)
        if backoff is not None and not backoff.due(time.monotonic()):
            return EngineLoad(address, None, backoff.message)
        try:
            return EngineLoad(address, await self.engines.get_stats(address))
        except grpc.aio.AioRpcError as err:
            return EngineLoad(address, None, f"{err.code().name}: {err.details()}")

    # ---- engines --------------------------------------------------------------------------

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
            channel = self.engines.drop_channel(address)
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
            listing = await self.engines.list_models(address)
        except grpc.aio.AioRpcError as err:
            return self._engine_down(address, err)
        if self._memory.unreachable.pop(address, None) is not None:
            log.info("engine reachable again", extra={"address": address})
        return listing

    # ---- one deployment -------------------------------------------------------------------

    async def _reconcile(self, model: DesiredModel, listings: dict[str, Listing]) -> None:
        """Loads the deployment's replicas. Scaled to zero (no replica desired): nothing to do.
        Replicas being drained are left as they are (the scaler unloads them). The status follows
        the tenant's replicas; the control plane's own replicas only gain or lose `ready` (one
        still loading never makes a serving deployment LOADING)."""
        if model.desired_replicas == 0:
            return
        written = [model.status, model.status_message]
        ready_written = {(e.address, e.served_model_name): e.ready for e in model.endpoints}
        stale = False

        async def set_status(status: str, message: str, ready: dict[tuple[str, str], bool]) -> None:
            nonlocal stale
            changed = {k: v for k, v in ready.items() if ready_written.get(k) != v}
            if stale or (written == [status, message] and not changed):
                return
            if await write_status(self._db, model, status, message, changed):
                written[:] = [status, message]
                ready_written.update(changed)
            else:
                stale = True

        async def mark_loading(engine_id: str) -> None:
            if written[0] != LOADING:
                await set_status(LOADING, f"engine {engine_id}: loading", {})

        async def no_status(engine_id: str) -> None:
            return None

        serving = [e for e in model.endpoints if not e.draining]
        outcomes = await asyncio.gather(
            *(
                self._ensure(
                    model, e, listings[e.address], mark_loading if e.placed_by == TENANT else no_status
                )
                for e in serving
            )
        )
        ready = {
            (e.address, e.served_model_name): o.state == "ready"
            for e, o in zip(serving, outcomes, strict=True)
        }
        tenant = [(e, o) for e, o in zip(serving, outcomes, strict=True) if e.placed_by == TENANT]
        if tenant:
            status, message = aggregate([e for e, _ in tenant], [o for _, o in tenant])
        else:  # cannot happen while serving (the tenant's replicas are never drained alone)
            status, message = written[0], written[1]
        await set_status(status, message, ready)
        if stale:
            await self._after_stale_write(model)

    async def _ensure(
        self,
        model: DesiredModel,
        endpoint: EngineModel,
        listing: Listing,
        mark_loading: Callable[[str], Awaitable[None]],
    ) -> Outcome:
        """Makes one engine serve the model; returns where that endpoint stands.

        Only a model the engine records as loaded for this deployment and generation counts as
        this endpoint's: anything else under its name is never adopted, replaced or unloaded."""
        if isinstance(listing, _Unreachable):
            return Outcome("unreachable", ENGINE_UNAVAILABLE)
        key = (endpoint.address, endpoint.served_model_name)
        fingerprint = model.fingerprint
        memory = self._memory
        served = listing.get(endpoint.served_model_name)
        if served is not None and served.owner != model.owner:
            return self._name_taken(model, endpoint)
        if served is not None:
            if served.state == engine_service_pb2.MODEL_STATE_READY:
                memory.failed_loads.pop(key, None)
                await self._unload_older(model, endpoint, listing)
                return Outcome("ready")
            if served.state == engine_service_pb2.MODEL_STATE_LOADING:
                return Outcome("loading", "loading")
            if served.state == engine_service_pb2.MODEL_STATE_UNLOADING:
                return Outcome("loading", "waiting for the engine to unload an older copy")
        failure = memory.failed_loads.get(key)
        if failure is not None and failure.fingerprint == fingerprint and not failure.due(time.monotonic()):
            return Outcome("failed", failure.message)

        await mark_loading(endpoint.engine_id)
        # Older generations of this deployment go first: their memory is the new one's.
        await self._unload_older(model, endpoint, listing)
        if served is not None:  # this generation's failed attempt: replace it
            await self.engines.unload(endpoint.address, endpoint.served_model_name, model.owner)
        request = engine_service_pb2.LoadModelRequest(
            name=endpoint.served_model_name,
            source=model.source,
            runner=model.runner,
            args=model.args,
            owner=model.owner,
        )
        log.info(
            "loading model",
            extra={
                "deployment": model.deployment_id,
                "address": endpoint.address,
                "model": endpoint.served_model_name,
                "source": str(model.source).strip(),
            },
        )
        try:
            loaded = await self.engines.load_model(endpoint.address, request)
        except grpc.aio.AioRpcError as err:
            # CANCELLED: the channel was closed under the call because the engine went away.
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                self._engine_down(endpoint.address, err)
                return Outcome("unreachable", ENGINE_UNAVAILABLE)
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION:  # loaded meanwhile by another
                return self._name_taken(model, endpoint)
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                message = f"load did not finish within {self.engines.load_timeout:g}s"
                return self._load_failed(key, fingerprint, message)
            return self._load_failed(key, fingerprint, f"{err.code().name}: {err.details()}")
        if loaded.state == engine_service_pb2.MODEL_STATE_READY:
            memory.failed_loads.pop(key, None)
            log.info("model ready", extra={"deployment": model.deployment_id, "address": endpoint.address})
            return Outcome("ready")
        if loaded.state == engine_service_pb2.MODEL_STATE_FAILED:
            return self._load_failed(key, fingerprint, loaded.error or "the engine reported a failed load")
        return Outcome("loading", engine_service_pb2.ModelState.Name(loaded.state).lower())

    async def _unload_older(self, model: DesiredModel, endpoint: EngineModel, listing: Listing) -> None:
        """Unloads, each as its owner, the models this engine serves for other (older)
        generations of the deployment."""
        if isinstance(listing, _Unreachable):
            return
        for served in list(listing.values()):
            owner = served.owner
            if (
                owner.deployment_id == model.deployment_id
                and owner.generation != model.generation
                and served.state != engine_service_pb2.MODEL_STATE_UNLOADING
            ):
                await self.engines.unload(endpoint.address, served.name, owner)
                self._memory.failed_loads.pop((endpoint.address, served.name), None)
                del listing[served.name]

    @staticmethod
    def _name_taken(model: DesiredModel, endpoint: EngineModel) -> Outcome:
        """The engine serves a model the platform did not load for this generation under its
        name (an operator's, loaded by hand): left alone, and the endpoint fails until it goes."""
        log.warning(
            "an engine serves a model the platform did not load under a deployment's name",
            extra={
                "deployment": model.deployment_id,
                "address": endpoint.address,
                "model": endpoint.served_model_name,
            },
        )
        return Outcome(
            "failed", "the engine serves another model under this deployment's name; ask a platform admin"
        )

    def _load_failed(self, key: tuple[str, str], fingerprint: str, message: str) -> Outcome:
        previous = self._memory.failed_loads.get(key)
        delay = self.failed_load_backoff
        if previous is not None and previous.fingerprint == fingerprint:
            delay = min(previous.delay * 2, self.failed_load_backoff * 8)
        self._memory.failed_loads[key] = _Backoff(delay, time.monotonic() + delay, message, fingerprint)
        log.warning("model load failed", extra={"address": key[0], "model": key[1], "error": message})
        return Outcome("failed", message)

    async def _after_stale_write(self, model: DesiredModel) -> None:
        if not await deployment_exists(self._db, model.deployment_id):
            # Deleted while loading: its unload may have run before the load finished.
            self.unload(model.endpoints)
        else:
            self.kick()  # changed meanwhile: act on the new version


async def _wait_any(events: Sequence[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
