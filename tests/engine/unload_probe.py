"""Loads the builtin tiny model on a real vLLM in this process, unloads it, and prints (one JSON
line) what the unload left: for `test_unload_frees.py`, which runs this in a process of its own
(vLLM's start-up, the frozen GC heap and the engine core's processes stay out of the test
process).

    python -m tests.engine.unload_probe DATA_DIR
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import psutil

from bud.engine.v1 import engine_service_pb2 as pb
from engine.manager import ModelManager
from engine.settings import EngineSettings

NAME = "probe"


def descendants() -> dict[int, str]:
    """This process's descendants and their states (a zombie is still one: not reaped), but
    multiprocessing's resource tracker: started by the first load, it serves the process for
    its lifetime."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found[child.pid] = child.status()
        except psutil.Error:
            pass
    return found


async def longest_stall(done: asyncio.Event, tick: float = 0.02) -> float:
    """Until `done`: the longest the event loop went without running this task (seconds)."""
    longest, last = 0.0, time.monotonic()
    while not done.is_set():
        await asyncio.sleep(tick)
        now = time.monotonic()
        longest, last = max(longest, now - last - tick), now
    return longest


async def probe(data_dir: Path) -> dict[str, Any]:
    manager = ModelManager(EngineSettings(data_dir=data_dir))
    before = descendants()
    served = await manager.load(
        NAME,
        pb.ModelSource(builtin="tiny-llama"),
        pb.RUNNER_GENERATE,
        pb.EngineArgs(max_model_len=256, kv_cache_space_gib=0.1),
    )
    started = sorted(set(descendants()) - set(before))
    model = manager.slots[NAME].model
    engine = weakref.ref(model.engine) if model is not None and model.engine is not None else None
    del model
    done = asyncio.Event()
    stall = asyncio.create_task(longest_stall(done))
    await asyncio.sleep(0.1)  # the ticker runs before the unload begins (a block at once counts)
    began = time.monotonic()
    await manager.unload(NAME)
    unload_s = time.monotonic() - began
    done.set()
    gc.collect()  # what is left is held, not waiting for a collection
    return {
        "state": pb.ModelState.Name(served.state),
        "error": served.error,
        "started": started,
        "left": {pid: status for pid, status in descendants().items() if pid in started},
        "engine_freed": engine is not None and engine() is None,
        "unload_s": unload_s,
        "longest_stall_s": await stall,
    }


if __name__ == "__main__":
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the engine arguments size the KV cache
    print(json.dumps(asyncio.run(probe(Path(sys.argv[1])))), flush=True)
