"""One mesh for the integration tests of a session (vLLM start-up is the slow part)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mesh import Mesh, start_mesh


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    try:
        yield running
    finally:
        running.stop()
        # Nothing the mesh logged may contain the key's secret part.
        assert running.api_key not in running.log_text().replace(f"OPENAI_API_KEY={running.api_key}", "")
