"""Shared fixtures of the image-runner tests: the tiny diffusion pipeline built once per session
into a data dir, and a model manager over it (no vLLM: the heap freeze after a load is counted
instead of done)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bud.engine.v1 import engine_service_pb2 as pb
from bud.openai.v1 import image_pb2
from engine import manager as manager_module
from engine.builtin_models.tiny_diffusion import build_tiny_diffusion
from engine.manager import ModelManager
from engine.service import EngineServicer
from engine.settings import EngineSettings

NAME = "tiny-diffusion"


@pytest.fixture(scope="session")
def image_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("image-data")
    build_tiny_diffusion(data / "models" / NAME)
    return data


@pytest.fixture
async def image_servicer(
    image_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EngineServicer]:
    """A servicer with the builtin tiny-diffusion loaded as `tiny-diffusion` (one torch thread:
    the test machines' cores are shared)."""
    monkeypatch.setattr(manager_module, "_freeze_heap", lambda: None)
    settings = EngineSettings(data_dir=image_data_dir, diffusion_threads=1, image_batch_window_ms=20)
    servicer = EngineServicer(ModelManager(settings))
    served = await servicer.LoadModel(
        pb.LoadModelRequest(name=NAME, source=pb.ModelSource(builtin=NAME)), None
    )
    assert served.model.state == pb.MODEL_STATE_READY, served.model.error
    yield servicer
    await servicer.manager.close()


def image_request(**fields: object) -> image_pb2.ImageGenerationRequest:
    fields.setdefault("model", NAME)
    fields.setdefault("prompt", "a photo of a cat")
    return image_pb2.ImageGenerationRequest(**fields)
