"""What UnloadModel frees, over the fake vLLM: vLLM's blocking shutdown runs off the event loop,
an engine core process vLLM killed without waiting for is reaped, and the unloaded model's
objects are collected although the GC heap was frozen after its load. The same on a real vLLM:
`test_unload_frees.py`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from engine import manager as manager_module
from engine.manager import ModelManager
from tests.engine.fake_vllm import FakeAsyncLLM, FakeVllm
from tests.engine.loading import load

pytestmark = pytest.mark.unit

# The real heap release (the `frozen` fixture replaces it in the module for the other tests).
RELEASE_HEAP = manager_module._release_heap


async def longest_stall_during(call: asyncio.Future[None] | asyncio.Task[None], tick: float = 0.01) -> float:
    """The longest the event loop went without running another task while `call` ran."""
    longest, last = 0.0, time.monotonic()
    while not call.done():
        await asyncio.sleep(tick)
        now = time.monotonic()
        longest, last = max(longest, now - last - tick), now
    await call
    return longest


async def test_vllms_blocking_shutdown_leaves_the_event_loop_running(
    manager: ModelManager, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM's AsyncLLM.shutdown blocks until the engine core exits (up to its 5 s grace period).
    monkeypatch.setattr(FakeAsyncLLM, "shutdown", lambda self, timeout=None: time.sleep(0.8))
    await load(manager, "m", model_dir)
    stall = await longest_stall_during(asyncio.create_task(manager.unload("m")))
    assert stall < 0.4, f"the event loop stood still {stall:.2f} s during the unload"


async def test_an_engine_core_killed_by_vllm_is_reaped(
    manager: ModelManager, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    core.start()
    try:
        # What vLLM does to a core that outlives its grace period: SIGKILL, no wait.
        monkeypatch.setattr(
            FakeAsyncLLM, "shutdown", lambda self, timeout=None: os.kill(core.pid, signal.SIGKILL)
        )
        await load(manager, "m", model_dir)
        manager.ready("m").engine.engine_core = SimpleNamespace(
            resources=SimpleNamespace(engine_manager=SimpleNamespace(processes=[core]))
        )
        await manager.unload("m")
        with pytest.raises(psutil.NoSuchProcess):
            status = psutil.Process(core.pid).status()
            pytest.fail(f"the killed engine core is still in the process table ({status})")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(core.pid, signal.SIGKILL)
        core.join(5)


async def test_an_unloaded_models_objects_are_collected_from_a_frozen_heap(
    manager: ModelManager, model_dir: Path, fake: FakeVllm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "_release_heap", RELEASE_HEAP)
    await load(manager, "m", model_dir)
    engine = manager.ready("m").engine
    engine.itself = engine  # a reference cycle, as vLLM's engine and its serving objects form
    freed = weakref.ref(engine)
    fake.engines.clear()
    del engine
    gc.freeze()  # as after every real load (`_freeze_heap`)
    try:
        await manager.unload("m")
        assert freed() is None, "the unloaded model's engine is still alive (frozen out of every collection)"
    finally:
        gc.unfreeze()
