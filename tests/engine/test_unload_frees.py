"""UnloadModel on a real vLLM gives everything back: the engine core and its workers gone and
reaped (no zombie left), the model's objects in the engine process freed although the heap is
frozen after each load (also the first model loaded in the process, which vLLM's lazily imported
modules pinned), and the event loop kept running while vLLM shuts down (vLLM's shutdown blocks
for up to its 5 s grace period; on the loop it stalled every other model's streams).
Scale to zero unloads idle models all day long: each unload that left something behind would
pile up. The model is loaded in a probe process of its own (`unload_probe.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mesh  # a real vLLM engine: minutes on two cores

REPO = Path(__file__).resolve().parents[2]


def test_unloading_a_model_frees_its_processes_and_objects(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen")])}
    run = subprocess.run(
        [sys.executable, "-m", "tests.engine.unload_probe", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["state"] == "MODEL_STATE_READY", found["error"]
    assert found["started"], f"the load started no process: nothing to check ({found})"
    assert found["left"] == {}, f"processes left after the unload (pid: state): {found}"
    assert found["engine_freed"], (
        f"the unloaded model's AsyncLLM is still alive in the engine process ({found})"
    )
    # vLLM's shutdown takes most of the unload (it waits up to 5 s for the core): on the event
    # loop, the loop stood still that long. What may stall it now is the one full collection of
    # the unfrozen heap (0.3-1.5 s on two busy cores), a fraction of the unload.
    assert found["longest_stall_s"] < found["unload_s"] / 2, (
        f"the event loop stood still during the unload ({found})"
    )
