"""What every test shares: one mesh per session for the tests that need the whole platform
(vLLM start-up is the slow part), and the markers that say what kind each test is.

Tests live beside the package they test (`tests/<package>/`), not in folders by kind; the kind is
a marker, assigned here from what a test uses so that it cannot be forgotten:

- ``mesh``: needs the whole mesh (the `mesh` fixture or ``pytestmark = pytest.mark.mesh``);
- ``postgres``: runs against the PostgreSQL server `tests/support/postgres.py` starts;
- ``integration``: starts real processes (any of the above, Redis, subprocesses);
- ``unit``: everything else — in-process and fast (`make test-fast` runs these).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from budrt import tls
from budrt.tls import LocalCa
from tests.support import tls as tls_support
from tests.support.mesh import Mesh, start_mesh
from tests.support.procs import descendants, still_running

# Fixtures that start a real server process: a test using one is an integration test.
PROCESS_FIXTURES = frozenset(
    {"mesh", "postgres_cluster", "redis_server", "redis_url", "clamd_server", "prometheus"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test unit or integration (and mesh when it uses the mesh fixture)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "mesh" in fixtures:
            item.add_marker(pytest.mark.mesh)
        explicit = {m.name for m in item.iter_markers()} & {"mesh", "postgres", "integration"}
        if explicit or fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


# The identity of the test process's own certificate: gateways may call every internal RPC.
TEST_PROCESS_IDENTITY = "gateway"


@pytest.fixture(scope="session", autouse=True)
def process_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCa]:
    """Every gRPC server and channel a test builds in this process speaks mutual TLS, as the
    platform's do: a local CA in a temporary directory, the test process holding a gateway's
    certificate (the mesh's processes use the CA `budrt up` generates in the mesh's data dir)."""
    ca = LocalCa(tmp_path_factory.mktemp("tls"))
    tls.configure(ca.material(TEST_PROCESS_IDENTITY))
    tls_support.SESSION_CA = ca
    yield ca
    tls.reset()


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # The session's tests (the live fuzz's 700 cases among them) call with the one key the mesh
    # prints, far beyond the default 100 requests a minute of a key without limits: none here.
    # The default itself is tested in tests/gateway/test_concurrency.py.
    running = start_mesh(tmp_path_factory.mktemp("mesh"), {"BUD_DEFAULT_KEY_REQUESTS_PER_MINUTE": "0"})
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


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems start with (022), under which new files are world-readable unless
    the code creating them says otherwise (for the tests of file and directory modes)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)
