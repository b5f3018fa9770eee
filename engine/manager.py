"""The models an engine process serves: load (one at a time: each start takes the machine's
memory and cores for a while), unload, look up, and their health.

Each model records its owner, the deployment and generation LoadModel named: a load of a name
served for another owner and an unload by another owner are refused (FAILED_PRECONDITION, without
saying who the owner is), so no caller can replace or unload a model loaded for someone else. A
model loaded without an owner (an operator's, by hand) is owned by "nobody", which only an
unowned request matches."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from dataclasses import dataclass, field

from grpc_health.v1 import health, health_pb2

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import (
    Reason,
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    unavailable,
)
from engine.images.runner import DiffusionModel, is_diffusers_model
from engine.settings import EngineSettings
from engine.sources import check_load, default_dtype, describe, resolve_args, resolve_source
from engine.vllm_model import VllmModel

log = logging.getLogger(__name__)


@dataclass
class ModelSlot:
    """A model under a name, in whatever state it is."""

    name: str
    source: pb.ModelSource
    runner: int
    args: pb.EngineArgs
    owner: pb.ModelOwner = field(default_factory=pb.ModelOwner)
    state: int = pb.MODEL_STATE_LOADING
    error: str = ""
    model: VllmModel | DiffusionModel | None = None
    loading: asyncio.Task[None] | None = None

    def describe(self) -> pb.ServedModel:
        """The slot as the contract's ServedModel."""
        runner = self.model.runner if self.model is not None else self.runner
        return pb.ServedModel(
            name=self.name,
            source=self.source,
            runner=runner,
            args=self.args,
            state=self.state,
            error=self.error,
            max_model_len=self.model.max_model_len if self.model else 0,
            owner=self.owner,
        )


class ModelManager:
    """Named models of this engine."""

    def __init__(
        self, settings: EngineSettings, health_servicer: health.aio.HealthServicer | None = None
    ) -> None:
        self.settings = settings
        self.health = health_servicer
        self.slots: dict[str, ModelSlot] = {}
        self._load_lock = asyncio.Lock()

    async def load(
        self,
        name: str,
        source: pb.ModelSource,
        runner: int,
        args: pb.EngineArgs,
        owner: pb.ModelOwner | None = None,
    ) -> pb.ServedModel:
        """Loads `source` as `name` for `owner` and returns when it is READY or FAILED. Loading
        the same thing again for the same owner is a no-op; a name served for another owner is
        refused (whatever its state), and so is a different source under a loaded name. A path the
        request names outside the model roots, or a chat template that is not template text, is
        INVALID_ARGUMENT before anything is made (`engine.sources.check_load`)."""
        if not name:
            raise invalid_argument("name is required", reason=None, param="name")
        owner = owner if owner is not None else pb.ModelOwner()
        check_load(source, args, self.settings.model_roots())
        slot = self.slots.get(name)
        if slot is not None:
            _check_owner(slot, owner)
            same = (
                slot.source == source and slot.args == args and runner in (pb.RUNNER_UNSPECIFIED, slot.runner)
            )
            if not same and slot.state != pb.MODEL_STATE_FAILED:
                raise already_exists(
                    f"model {name!r} is already served from {describe(slot.source)}; unload it first",
                    reason=Reason.MODEL_NAME_TAKEN,
                    param="name",
                )
            if (
                same
                and slot.state in (pb.MODEL_STATE_READY, pb.MODEL_STATE_LOADING)
                and slot.loading is not None
            ):
                await asyncio.shield(slot.loading)
                return slot.describe()
        slot = ModelSlot(name, source, runner, args, owner=owner)
        self.slots[name] = slot
        slot.loading = asyncio.create_task(self._load(slot))
        await asyncio.shield(slot.loading)
        return slot.describe()

    async def _load(self, slot: ModelSlot) -> None:
        await self._set_health(slot.name, False)
        async with self._load_lock:
            args = pb.EngineArgs()
            args.CopyFrom(slot.args)
            dtype = default_dtype(slot.source)
            if dtype and not args.HasField("dtype"):
                args.dtype = dtype
            model: VllmModel | DiffusionModel = VllmModel(slot.name, slot.source, slot.runner, args)
            try:
                roots = self.settings.model_roots()
                resolved = await asyncio.to_thread(resolve_source, slot.source, self.settings.data_dir, roots)
                if await asyncio.to_thread(self._diffusion, slot.runner, resolved.model, resolved.revision):
                    model = self._diffusion_model(slot, args)
                model.args = resolve_args(args, roots)
                log.info("loading model", extra={"model": slot.name, "source": describe(slot.source)})
                if isinstance(model, VllmModel):
                    # A diffusers pipeline loads in a thread of this process: nothing to kill.
                    await model.start(
                        resolved.model,
                        revision=resolved.revision,
                        timeout=self.settings.model_start_timeout_seconds,
                    )
                else:
                    await model.start(resolved.model, revision=resolved.revision)
            except ServiceError as err:
                self._loaded(slot, pb.MODEL_STATE_FAILED, err.message)
            except Exception as err:  # vLLM raises many kinds; the reason goes back to the caller
                log.exception("loading %s failed", slot.name)
                self._loaded(slot, pb.MODEL_STATE_FAILED, f"{type(err).__name__}: {err}")
            else:
                # Kept even when an unload began meanwhile: unload() stops it once this returns.
                slot.model = model
                self._loaded(slot, pb.MODEL_STATE_READY, "")
                log.info("model ready", extra={"model": slot.name, "max_model_len": model.max_model_len})
                _freeze_heap()
        await self._set_health(slot.name, slot.state == pb.MODEL_STATE_READY)

    @staticmethod
    def _diffusion(runner: int, model: str, revision: str) -> bool:
        """Whether a load is a diffusers pipeline: RUNNER_DIFFUSION, or no runner named and the
        source's `model_index.json` names a pipeline (engine.images)."""
        if runner == pb.RUNNER_DIFFUSION:
            return True
        return runner == pb.RUNNER_UNSPECIFIED and is_diffusers_model(model, revision)

    def _diffusion_model(self, slot: ModelSlot, args: pb.EngineArgs) -> DiffusionModel:
        return DiffusionModel(
            slot.name,
            slot.source,
            args,
            batch_window_s=self.settings.image_batch_window_ms / 1000,
            max_batch=self.settings.image_max_batch,
            threads=self.settings.diffusion_threads,
        )

    @staticmethod
    def _loaded(slot: ModelSlot, state: int, error: str) -> None:
        """Records how a load ended, unless an unload began meanwhile: that slot stays UNLOADING
        (never READY, so never SERVING) until unload() has stopped what the load started."""
        if slot.state != pb.MODEL_STATE_UNLOADING:
            slot.state, slot.error = state, error

    async def unload(self, name: str, owner: pb.ModelOwner | None = None) -> None:
        """Stops serving `name` and frees its engine; only for the owner it was loaded for."""
        slot = self.slots.get(name)
        if slot is None:
            raise not_found(f"model {name!r} is not served here", reason=Reason.MODEL_NOT_FOUND, param="name")
        _check_owner(slot, owner if owner is not None else pb.ModelOwner())
        slot.state = pb.MODEL_STATE_UNLOADING
        await self._set_health(name, False)
        if slot.loading is not None and not slot.loading.done():
            await asyncio.shield(slot.loading)
        model, slot.model = slot.model, None
        try:
            if model is not None:
                await model.stop()
        finally:
            self.slots.pop(name, None)
            if model is not None:
                del model  # unreachable now: the collection below frees it
                _release_heap()

    def ready(self, name: str) -> VllmModel | DiffusionModel:
        """The READY model `name`, or the error a caller should get."""
        slot = self.slots.get(name)
        if slot is None:
            raise not_found(
                f"The model `{name}` does not exist.", reason=Reason.MODEL_NOT_FOUND, param="model"
            )
        if slot.state == pb.MODEL_STATE_READY and slot.model is not None and slot.model.dead:
            self._mark_dead(slot)  # noticed before the watchdog: refuse now; it updates health
        if slot.state != pb.MODEL_STATE_READY or slot.model is None:
            state = pb.ModelState.Name(slot.state)
            detail = f": {slot.error}" if slot.error else ""
            raise unavailable(
                f"The model `{name}` is not ready ({state}){detail}.",
                reason=Reason.MODEL_NOT_READY,
                param="model",
            )
        return slot.model

    def _mark_dead(self, slot: ModelSlot) -> None:
        slot.state = pb.MODEL_STATE_FAILED
        slot.error = "the vLLM engine core stopped; load the model again"
        log.error("engine core died", extra={"model": slot.name})

    async def watch(self, interval: float = 2.0) -> None:
        """Until cancelled: marks READY models whose engine core died FAILED (health NOT_SERVING,
        ListModels says why) and frees what is left of them. The app's reconciler then loads
        them again."""
        while True:
            await asyncio.sleep(interval)
            for slot in list(self.slots.values()):
                model = slot.model
                if model is None or not model.dead:
                    continue
                if slot.state == pb.MODEL_STATE_READY:
                    self._mark_dead(slot)
                if slot.state == pb.MODEL_STATE_FAILED:
                    slot.model = None
                    await self._set_health(slot.name, False)
                    try:
                        await model.stop()
                    except Exception:
                        log.exception("cleaning up the dead engine of %s failed", slot.name)
                    del model
                    _release_heap()

    async def close(self) -> None:
        """Unloads everything."""
        for name, slot in list(self.slots.items()):
            try:
                await self.unload(name, slot.owner)
            except Exception:
                log.exception("unloading %s failed", name)

    async def _set_health(self, name: str, serving: bool) -> None:
        if self.health is not None:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await self.health.set(name, status)


def _check_owner(slot: ModelSlot, owner: pb.ModelOwner) -> None:
    """FAILED_PRECONDITION unless `owner` is the one the slot was loaded for. The message names
    neither owner: a caller learns only that the name is not theirs."""
    if slot.owner != owner:
        raise failed_precondition(
            f"model {slot.name!r} is served here for another owner",
            reason=Reason.MODEL_OWNER_MISMATCH,
            param="owner",
        )


def _freeze_heap() -> None:
    """Keeps everything allocated so far (torch, vLLM, the loaded models' serving objects: a few
    million objects) out of later garbage collections, as `vllm serve` does after start-up:
    otherwise each full collection walks that heap and stalls every stream of the process
    (the gateway's too, when co-hosted). Objects of a model unloaded later stay frozen; those
    not in reference cycles are still freed by reference counting."""
    try:
        from vllm.utils.gc_utils import freeze_gc_heap
    except ImportError:  # an engine serving diffusion models only: the same, by hand
        gc.collect()
        gc.freeze()
        return
    freeze_gc_heap()


def _release_heap() -> None:
    """Frees what an unloaded model left in this process and gives the memory back to the OS.

    The heap frozen after its load (`_freeze_heap`) holds the model's objects out of every
    collection, and vLLM's engine, its serving objects and our hooks on them reference each
    other (cycles, which only a collection frees): without this an unloaded model's front half
    (tokenizer, renderer, serving objects, the AsyncLLM) stayed in the process after its unload.
    So: unfreeze, collect once (one full pass, at unload only), freeze what
    is left again if it was frozen (the other models' objects: the reason for freezing holds),
    and hand glibc's free heap pages back (`malloc_trim`), which a collection alone does not."""
    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.collect()
    if frozen:
        gc.freeze()
    _malloc_trim()


def _malloc_trim() -> None:
    """glibc's `malloc_trim(0)`: returns the free memory at the top of the heap and in free
    pages of its arenas to the OS; nothing where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
