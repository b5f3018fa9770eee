"""The engine's diffusion runner on the real tiny pipeline: determinism, validation against the
model, encodings, batching, cancellation, streaming, and the runner kinds kept apart."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

from bud.engine.v1 import engine_service_pb2 as pb
from bud.openai.v1 import chat_pb2
from budrt.errors import ServiceError
from engine.images.runner import DiffusionModel, partial_steps
from engine.service import EngineServicer
from tests.engine.images_support import NAME, image_data_dir, image_request, image_servicer

__all__ = ["image_data_dir", "image_servicer"]  # fixtures


def runner_of(servicer: EngineServicer) -> DiffusionModel:
    model = servicer.manager.ready(NAME)
    assert isinstance(model, DiffusionModel)
    return model


def max_pixel_difference(a: bytes, b: bytes) -> int:
    pa, pb_ = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    assert pa.size == pb_.size
    return max(
        abs(x - y)
        for p, q in zip(pa.getdata(), pb_.getdata(), strict=True)
        for x, y in zip(p, q, strict=True)
    )


async def refusal(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value


async def test_loads_as_a_diffusion_model_and_is_listed(image_servicer: EngineServicer) -> None:
    listed = await image_servicer.ListModels(pb.ListModelsRequest(), None)
    (model,) = listed.models
    assert (model.name, model.runner, model.state) == (NAME, pb.RUNNER_DIFFUSION, pb.MODEL_STATE_READY)
    assert model.max_model_len == 77
    stats = await image_servicer.GetStats(pb.GetStatsRequest(), None)
    assert [s.name for s in stats.models] == [NAME]


async def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(
    image_servicer: EngineServicer,
) -> None:
    first = await image_servicer.GenerateImages(image_request(seed=7, n=2), None)
    again = await image_servicer.GenerateImages(image_request(seed=7, n=2), None)
    other = await image_servicer.GenerateImages(image_request(seed=8), None)
    assert [i.data for i in first.images] == [i.data for i in again.images]
    assert [i.seed for i in first.images] == [7, 8]
    assert first.images[0].data != first.images[1].data  # seed + index per image
    assert other.images[0].data not in (first.images[0].data, first.images[1].data)
    # Seed 8 is image 1 of seed 7: the same noise (bytes may differ: the batch of 2 rounds
    # differently from a batch of 1, see test_concurrent_requests...).
    assert max_pixel_difference(other.images[0].data, first.images[1].data) <= 4
    picture = Image.open(io.BytesIO(first.images[0].data))
    assert (picture.format, picture.size) == ("PNG", (64, 64))
    assert (first.usage.images, first.usage.steps, first.steps) == (2, 4, 4)
    assert first.usage.input_tokens == first.usage.total_tokens > 0
    assert first.revised_prompt == "a photo of a cat"


async def test_without_a_seed_one_is_drawn_and_returned(image_servicer: EngineServicer) -> None:
    drawn = await image_servicer.GenerateImages(image_request(), None)
    again = await image_servicer.GenerateImages(image_request(seed=drawn.images[0].seed), None)
    assert drawn.images[0].data == again.images[0].data


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
async def test_encodings_decode_at_the_requested_size(
    image_servicer: EngineServicer, fmt: str, pil: str
) -> None:
    out = await image_servicer.GenerateImages(
        image_request(size="96x64", output_format=fmt, output_compression=50, seed=1), None
    )
    picture = Image.open(io.BytesIO(out.images[0].data))
    assert (picture.format, picture.size) == (pil, (96, 64))
    assert (out.images[0].output_format, out.images[0].width, out.images[0].height) == (fmt, 96, 64)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "65x64"}, "size"),
        ({"size": "32x32"}, "size"),
        ({"size": "4096x64"}, "size"),
        ({"size": "big"}, "size"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"quality": "ultra"}, "quality"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "cat " * 100}, "prompt"),
        ({"negative_prompt": "dog " * 100}, "negative_prompt"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_compression": 101}, "output_compression"),
        ({"partial_images": 4}, "partial_images"),
    ],
)
async def test_bad_requests_are_refused_naming_the_parameter(
    image_servicer: EngineServicer, fields: dict[str, Any], param: str
) -> None:
    err = await refusal(image_servicer.GenerateImages(image_request(**fields), None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)


async def test_an_overlong_prompt_is_truncated_when_allowed_and_says_so(
    image_servicer: EngineServicer,
) -> None:
    out = await image_servicer.GenerateImages(
        image_request(prompt="cat " * 100, allow_prompt_truncation=True, seed=1), None
    )
    assert out.revised_prompt.endswith("(truncated to 77 tokens)")
    assert out.revised_prompt.startswith("cat cat")
    assert out.usage.input_tokens == 77


async def test_quality_scales_the_default_steps(image_servicer: EngineServicer) -> None:
    low = await image_servicer.GenerateImages(image_request(quality="low"), None)
    hd = await image_servicer.GenerateImages(image_request(quality="hd"), None)
    steps = await image_servicer.GenerateImages(image_request(quality="hd", num_inference_steps=3), None)
    assert (low.steps, hd.steps, steps.steps) == (2, 8, 3)


async def test_concurrent_requests_of_one_shape_run_as_one_pipeline_call(
    image_servicer: EngineServicer,
) -> None:
    model = runner_of(image_servicer)
    before = model.pipeline_calls
    alone = await image_servicer.GenerateImages(image_request(seed=5, prompt="a red boat"), None)
    calls = before + 1
    assert model.pipeline_calls == calls
    together = await asyncio.gather(
        image_servicer.GenerateImages(image_request(seed=5, prompt="a red boat"), None),
        image_servicer.GenerateImages(image_request(seed=9, n=2, prompt="a blue sky"), None),
    )
    assert model.pipeline_calls == calls + 1
    assert [len(r.images) for r in together] == [1, 2]
    assert together[0].revised_prompt == "a red boat" and together[1].revised_prompt == "a blue sky"
    # Another shape is another call.
    await asyncio.gather(
        image_servicer.GenerateImages(image_request(seed=5), None),
        image_servicer.GenerateImages(image_request(seed=5, size="64x128"), None),
    )
    assert model.pipeline_calls == calls + 3
    decoded = [Image.open(io.BytesIO(r.images[0].data)).size for r in (alone, *together)]
    assert decoded == [(64, 64)] * 3
    # Batched with another request, a request gets its own images (its seed's noise, its prompt);
    # floating point in a larger batch may round a pixel value differently.
    assert max_pixel_difference(alone.images[0].data, together[0].images[0].data) <= 4


async def test_a_cancelled_request_stops_denoising_and_frees_the_worker(
    image_servicer: EngineServicer,
) -> None:
    model = runner_of(image_servicer)
    long = asyncio.create_task(image_servicer.GenerateImages(image_request(num_inference_steps=500), None))
    while model.running == 0:  # in the pipeline now
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    started = time.monotonic()
    out = await asyncio.wait_for(image_servicer.GenerateImages(image_request(seed=1), None), 60)
    assert len(out.images) == 1
    # 500 steps take tens of seconds here; the next request waited only for the current step.
    elapsed = time.monotonic() - started
    single = time.monotonic()
    await image_servicer.GenerateImages(image_request(seed=1), None)
    assert elapsed < 5 * (time.monotonic() - single) + 1.0


async def test_a_streamed_request_reports_each_step_partials_then_the_result(
    image_servicer: EngineServicer,
) -> None:
    events = [
        e
        async for e in image_servicer.StreamImages(
            image_request(seed=3, num_inference_steps=6, partial_images=2, n=2), None
        )
    ]
    *progress, last = events
    assert [e.step for e in progress] == [s for s in range(1, 7) for _ in range(2)]
    assert {e.total_steps for e in progress} == {6}
    partial = [e for e in progress if e.HasField("partial_image")]
    assert [(e.step, e.image_index, e.partial_image_index) for e in partial] == [
        (2, 0, 0),
        (2, 1, 0),
        (4, 0, 1),
        (4, 1, 1),
    ]
    assert Image.open(io.BytesIO(partial[0].partial_image.data)).size == (64, 64)
    assert last.HasField("result") and len(last.result.images) == 2
    unary = await image_servicer.GenerateImages(image_request(seed=3, num_inference_steps=6, n=2), None)
    assert [i.data for i in last.result.images] == [i.data for i in unary.images]


def test_partial_steps_are_evenly_spaced_and_never_the_last() -> None:
    assert partial_steps(0, 10) == frozenset()
    assert partial_steps(1, 10) == {5}
    assert partial_steps(3, 8) == {2, 4, 6}
    assert partial_steps(3, 2) == {1}


async def test_chat_on_an_image_model_and_images_on_a_chat_model_are_refused(
    image_servicer: EngineServicer, fake: Any, model_dir: Path, tmp_path: Path
) -> None:
    chat = chat_pb2.ChatCompletionRequest(model=NAME)
    chat.messages.add(role="user", content_text="hi")
    err = await refusal(image_servicer.CreateChatCompletion(chat, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "model")
    image_servicer.manager.settings.allowed_model_roots = [tmp_path]
    await image_servicer.LoadModel(
        pb.LoadModelRequest(name="chat", source=pb.ModelSource(local_path=str(model_dir))), None
    )
    err = await refusal(image_servicer.GenerateImages(image_request(model="chat"), None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "model")
    assert "does not generate images" in err.message
