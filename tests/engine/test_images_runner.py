"""The diffusion runner's loading and unloading, the tiny pipeline's builder, and the gRPC face
of GenerateImages/StreamImages over a real engine gRPC server in this process."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bud.engine.v1 import engine_service_pb2 as pb
from bud.engine.v1 import engine_service_pb2_grpc
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from engine import manager as manager_module
from engine.builtin_models.tiny_diffusion import build_tiny_diffusion
from engine.images.runner import DiffusionModel, is_pipeline_dir
from engine.manager import ModelManager
from engine.server import ENGINE_SERVICE
from engine.service import EngineServicer
from engine.settings import EngineSettings
from tests.engine.images_support import NAME, image_data_dir, image_request, image_servicer

__all__ = ["image_data_dir", "image_servicer"]  # fixtures


def digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_building_twice_gives_identical_files(image_data_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_diffusion(tmp_path / NAME)
    first = digests(image_data_dir / "models" / NAME)
    assert digests(again) == first
    assert "unet/diffusion_pytorch_model.safetensors" in first and "tokenizer/vocab.json" in first
    assert is_pipeline_dir(again)
    # A complete build is not rebuilt.
    stamp = (again / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    build_tiny_diffusion(again)
    assert (again / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp


def manager_over(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModelManager:
    monkeypatch.setattr(manager_module, "_freeze_heap", lambda: None)
    settings = EngineSettings(
        data_dir=data_dir, allowed_model_roots=[data_dir], diffusion_threads=1, image_batch_window_ms=0
    )
    return ModelManager(settings)


async def test_a_local_pipeline_directory_loads_as_diffusion_without_a_runner(
    image_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = manager_over(image_data_dir, monkeypatch)
    source = pb.ModelSource(local_path=str(image_data_dir / "models" / NAME))
    try:
        served = await manager.load("local", source, pb.RUNNER_UNSPECIFIED, pb.EngineArgs())
        assert (served.state, served.runner) == (pb.MODEL_STATE_READY, pb.RUNNER_DIFFUSION), served.error
        assert isinstance(manager.ready("local"), DiffusionModel)
    finally:
        await manager.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_unloading_frees_the_pipeline_and_its_memory(
    image_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = manager_over(image_data_dir, monkeypatch)
    servicer = EngineServicer(manager)
    source = pb.ModelSource(builtin=NAME)

    async def cycle() -> weakref.ref[object]:
        await manager.load(NAME, source, pb.RUNNER_DIFFUSION, pb.EngineArgs())
        model = manager.ready(NAME)
        assert isinstance(model, DiffusionModel)
        await servicer.GenerateImages(image_request(seed=1, size="128x128"), None)
        pipe = weakref.ref(model.pipe.unet)
        del model
        await manager.unload(NAME)
        return pipe

    first = await cycle()
    gc.collect()
    assert first() is None  # nothing holds the unloaded pipeline
    after_one = rss_bytes()
    for _ in range(2):
        assert (await cycle())() is None
    gc.collect()
    # Two more loads, generations and unloads leave the process no bigger (a leaked tiny
    # pipeline with its activations is ~10 MB a cycle).
    assert rss_bytes() - after_one < 24 * 2**20
    assert NAME not in manager.slots


@pytest.fixture
async def engine_stub(
    image_servicer: EngineServicer,
) -> AsyncIterator[engine_service_pb2_grpc.EngineServiceStub]:
    server = GrpcServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                image_servicer, engine_service_pb2_grpc.add_EngineServiceServicer_to_server, ENGINE_SERVICE
            )
        ],
    )
    await server.start()
    channel = service_channel(f"127.0.0.1:{server.port}")
    try:
        yield engine_service_pb2_grpc.EngineServiceStub(channel)
    finally:
        await channel.close()
        await server.server.stop(None)


async def test_the_grpc_face_generates_streams_refuses_and_cancels(
    engine_stub: engine_service_pb2_grpc.EngineServiceStub, image_servicer: EngineServicer
) -> None:
    out = await engine_stub.GenerateImages(image_request(seed=11, n=2))
    direct = await image_servicer.GenerateImages(image_request(seed=11, n=2), None)
    assert [i.data for i in out.images] == [i.data for i in direct.images]
    events = [e async for e in engine_stub.StreamImages(image_request(seed=11, n=2, partial_images=1))]
    assert events[-1].result.images[0].data == out.images[0].data
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await engine_stub.GenerateImages(image_request(size="100x100"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A caller that cancels mid-diffusion frees the runner for the next one.
    model = image_servicer.manager.ready(NAME)
    assert isinstance(model, DiffusionModel)
    call = engine_stub.GenerateImages(image_request(num_inference_steps=500))
    while model.running == 0:
        await asyncio.sleep(0.01)
    call.cancel()
    started = time.monotonic()
    await asyncio.wait_for(engine_stub.GenerateImages(image_request(seed=1)), 60)
    assert time.monotonic() - started < 10
    while model.inflight:  # the cancelled call's handler has ended
        await asyncio.sleep(0.01)
