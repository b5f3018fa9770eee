"""One mesh for the integration tests of a session (vLLM start-up is the slow part)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.mesh import Mesh, start_mesh
from tests.support.procs import descendants, still_running


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    try:
        yield running
    finally:
        spawned = descendants(running.process.pid)  # services, vLLM engine cores and workers
        running.stop()
        # Stopping the mesh ends everything it started: no engine core outlives it.
        deadline = time.monotonic() + 10
        while still_running(spawned) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not still_running(spawned), f"processes outlived the mesh: {sorted(still_running(spawned))}"
        # Nothing the mesh logged may contain the key's secret part.
        assert running.api_key not in running.log_text().replace(f"OPENAI_API_KEY={running.api_key}", "")
