"""Fixtures for gateway tests: a real uvicorn HTTP server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from tests.support.mesh import free_port


@contextlib.asynccontextmanager
async def http_server(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serves an ASGI app with uvicorn (httptools) on loopback; yields its base URL. `config`:
    more `uvicorn.Config` settings (the gateway's `http=` protocol, limits)."""
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "loop": "none",
        "http": "httptools",
        "lifespan": "off",
        "access_log": False,
        "log_config": None,
    }
    server = uvicorn.Server(uvicorn.Config(app, **{**settings, **config}))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from tests.gateway.library_proto import library_modules

    return library_modules(str(tmp_path_factory.mktemp("library_gen")))
