"""Fixtures of the engine's unit tests: vLLM swapped for the fakes of `fake_vllm.py`, a model
manager reporting to a real grpc.health.v1 servicer, and the servicer over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health

from engine import manager as manager_module
from engine.manager import ModelManager
from engine.service import EngineServicer
from engine.settings import EngineSettings
from tests.engine.fake_vllm import FakeVllm, install


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVllm:
    """vLLM's engine and serving objects replaced by fakes (scripted through the returned object)."""
    return install(monkeypatch)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the GC-heap freezes after loads (instead of freezing the test process's heap; the
    heap release after unloads is skipped too: a full collection of the test process each)."""
    calls: list[int] = []
    monkeypatch.setattr(manager_module, "_freeze_heap", lambda: calls.append(1))
    monkeypatch.setattr(manager_module, "_release_heap", lambda: None)
    return calls


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A local model directory (what a source path must hold: a config.json)."""
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
async def health_servicer() -> health.aio.HealthServicer:
    return health.aio.HealthServicer()


@pytest.fixture
async def manager(
    fake: FakeVllm, frozen: list[int], tmp_path: Path, health_servicer: health.aio.HealthServicer
) -> AsyncIterator[ModelManager]:
    """A model manager over the fake vLLM; everything it loaded is unloaded after the test."""
    # tmp_path is a model root: `model_dir` lies in it.
    settings = EngineSettings(data_dir=tmp_path / "data", allowed_model_roots=[tmp_path])
    models = ModelManager(settings, health_servicer)
    yield models
    await models.close()


@pytest.fixture
def servicer(manager: ModelManager) -> EngineServicer:
    return EngineServicer(manager)
